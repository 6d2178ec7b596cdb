"""A footage avatar end to end, in a real room, in each of the three modes: the viewer sees
the person's own footage, the mouth moves with the agent's speech and rests after it."""

from __future__ import annotations

import uuid

import numpy as np
import pytest

from livekit_avatar_plugin import VideoOptions
from livekit_avatar_plugin.keyless import LocalTTS

from .conftest import WorkerProcess
from .rooms import speak_and_watch

pytestmark = pytest.mark.livekit_server

SIZE = 512


def _mouth_box(avatar) -> tuple[slice, slice]:
    """Where the mouth crops land in a canvas-sized frame, with room for head motion."""
    x, y, w, h = avatar.atlas.box
    return slice(max(0, y - 10), y + h + 10), slice(max(0, x - 10), x + w + 10)


def _speak_and_watch(info, avatar, **options):
    return speak_and_watch(info, _mouth_box(avatar), size=SIZE, tts=LocalTTS(), face_pipeline=None,
                           avatar=str(avatar.path), video=VideoOptions(quality="auto", width=SIZE, height=SIZE),
                           **options)


def _looks_like_the_footage(frame: np.ndarray, avatar) -> None:
    """Above the mouth, the viewer's frame is one of the footage's own frames (within video
    coding's error): whichever loop it came from, and whatever mouth was pasted below."""
    import av as pyav

    top = slice(0, avatar.atlas.box[1])
    best = np.inf
    for file in {loop.file for loop in avatar.loops.values()}:
        with pyav.open(str(avatar.path / file)) as c:
            for f in c.decode(video=0):
                g = f.to_ndarray(format="rgb24")[top].astype(np.int16)
                best = min(best, float(np.abs(frame[top].astype(np.int16) - g).mean()))
    assert best < 8.0, f"the frame is {best:.1f} grey levels from any frame of the footage"


@pytest.mark.parametrize("mode", ["participant", "in_process"])
async def test_footage_avatar_speaks_in_a_room(livekit_server, synthetic_footage, mode):
    _, avatar = synthetic_footage
    speaking, resting, _, last = await _speak_and_watch(livekit_server, avatar, mode=mode)
    print(f"\n{mode}: mouth motion per frame speaking {speaking:.2f}, resting {resting:.2f}")
    assert speaking > 2 * resting and speaking > 1.0
    _looks_like_the_footage(last, avatar)


async def test_footage_avatar_speaks_through_a_dispatched_worker(livekit_server, synthetic_footage):
    _, avatar = synthetic_footage
    worker = WorkerProcess(livekit_server, agent_name=f"footage-{uuid.uuid4().hex[:6]}", face_pipeline=None,
                           avatar=str(avatar.path))
    try:
        worker.wait_registered()
        speaking, resting, _, last = await _speak_and_watch(
            livekit_server, avatar, mode="dispatch", agent_name=worker.agent_name
        )
        assert worker.rendered(), worker.log()
    finally:
        worker.stop()
    print(f"\ndispatch: mouth motion per frame speaking {speaking:.2f}, resting {resting:.2f}")
    assert speaking > 2 * resting and speaking > 1.0
    _looks_like_the_footage(last, avatar)
