"""A footage avatar end to end, in a real room, in each of the three modes: the viewer sees
the person's own footage, the mouth moves with the agent's speech and rests after it."""

from __future__ import annotations

import asyncio
import time
import uuid

import numpy as np
import pytest
from livekit import rtc

from livekit_avatar_plugin import VideoOptions
from livekit_avatar_plugin.keyless import LocalTTS

from .av_harness import make_token
from .conftest import WorkerProcess
from .rooms import agent_with_avatar, shut_down

pytestmark = pytest.mark.livekit_server

SIZE = 512


def _mouth_box(avatar) -> tuple[slice, slice]:
    """Where the mouth crops land in a canvas-sized frame, with room for head motion."""
    x, y, w, h = avatar.atlas.box
    return slice(max(0, y - 10), y + h + 10), slice(max(0, x - 10), x + w + 10)


async def _speak_and_watch(info, avatar, **options) -> tuple[float, float, np.ndarray]:
    """Mouth motion per frame while the agent speaks and after, and a full frame."""
    box = _mouth_box(avatar)
    room = f"footage-{uuid.uuid4().hex[:8]}"
    agent_room, session, av = await agent_with_avatar(
        info, room, tts=LocalTTS(), face_pipeline=None, avatar=str(avatar.path),
        video=VideoOptions(quality="auto", width=SIZE, height=SIZE), **options,
    )  # fmt: skip
    viewer = rtc.Room()
    mouth: list[tuple[float, np.ndarray]] = []
    frame: dict[str, np.ndarray] = {}
    readers: list[asyncio.Task] = []

    def on_track(track, publication, participant):
        if track.kind != rtc.TrackKind.KIND_VIDEO:
            return

        async def read():
            async for ev in rtc.VideoStream(track, format=rtc.VideoBufferType.RGB24):
                f = ev.frame
                if (f.width, f.height) != (SIZE, SIZE):
                    continue  # a lower simulcast layer while it ramps up
                rgb = np.frombuffer(f.data, np.uint8).reshape(SIZE, SIZE, 3)
                mouth.append((time.monotonic(), rgb[box].astype(np.int16)))
                frame["last"] = rgb.copy()

        readers.append(asyncio.ensure_future(read()))

    viewer.on("track_subscribed", on_track)
    try:
        await viewer.connect(info.url, make_token(info, room, "viewer-footage"))
        deadline = time.monotonic() + 20
        while len(mouth) < 25 and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        assert mouth, "no full-size video reached the viewer"
        t_speech = time.monotonic()
        handle = session.say("Hello! My name is Ava, and I am happy to meet you today.")
        await asyncio.wait_for(handle.wait_for_playout(), 30)
        t_end = time.monotonic()
        await asyncio.sleep(2.5)
    finally:
        await shut_down(session, av, viewer, agent_room, readers=readers)

    def motion(t0: float, t1: float) -> float:
        crops = [c for t, c in mouth if t0 <= t <= t1]
        diffs = [np.abs(b - a).mean() for a, b in zip(crops, crops[1:])]
        return float(np.mean(diffs)) if diffs else 0.0

    return motion(t_speech + 0.5, t_end - 0.2), motion(t_end + 0.8, t_end + 2.5), frame["last"]


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
    speaking, resting, last = await _speak_and_watch(livekit_server, avatar, mode=mode)
    print(f"\n{mode}: mouth motion per frame speaking {speaking:.2f}, resting {resting:.2f}")
    assert speaking > 2 * resting and speaking > 1.0
    _looks_like_the_footage(last, avatar)


async def test_footage_avatar_speaks_through_a_dispatched_worker(livekit_server, synthetic_footage):
    _, avatar = synthetic_footage
    worker = WorkerProcess(livekit_server, agent_name=f"footage-{uuid.uuid4().hex[:6]}", face_pipeline=None,
                           avatar=str(avatar.path))
    try:
        worker.wait_registered()
        speaking, resting, last = await _speak_and_watch(
            livekit_server, avatar, mode="dispatch", agent_name=worker.agent_name
        )
        assert worker.rendered(), worker.log()
    finally:
        worker.stop()
    print(f"\ndispatch: mouth motion per frame speaking {speaking:.2f}, resting {resting:.2f}")
    assert speaking > 2 * resting and speaking > 1.0
    _looks_like_the_footage(last, avatar)
