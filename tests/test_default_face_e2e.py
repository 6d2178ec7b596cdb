"""The shipped face end to end: real lip-sync model and renderer, in a real room."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
from livekit import rtc
from livekit_avatar_plugin import ConversationState, VideoOptions
from livekit_avatar_plugin.keyless import LocalTTS
from livekit_avatar_plugin.pipeline import load_pipeline

from .av_harness import make_token
from .rooms import agent_with_avatar, shut_down

pytestmark = pytest.mark.livekit_server

ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts"


def mouth_box(size: int = 512) -> tuple[slice, slice]:
    """Where the default avatar's mouth moves in a size x size frame."""
    renderer = load_pipeline("default").create_renderer(size, size)
    closed = renderer.render({"lips_closed": 1.0}, ConversationState.IDLE, 0.0).astype(int)
    renderer = load_pipeline("default").create_renderer(size, size)
    opened = renderer.render({"jaw_open": 1.0}, ConversationState.IDLE, 0.0).astype(int)
    ys, xs = np.nonzero(np.abs(opened - closed).max(axis=2) > 20)
    return slice(ys.min(), ys.max() + 1), slice(xs.min(), xs.max() + 1)


async def test_default_avatar_moves_its_mouth_with_speech_and_rests_after(livekit_server):
    box = mouth_box()
    room = f"face-{uuid.uuid4().hex[:8]}"
    agent_room, session, avatar = await agent_with_avatar(
        livekit_server,
        room,
        tts=LocalTTS(),
        face_pipeline=None,  # the shipped lip-sync model and renderer
        video=VideoOptions(quality="auto", width=512, height=512),
    )
    viewer = rtc.Room()
    mouth: list[tuple[float, np.ndarray]] = []
    snapshot: dict[str, np.ndarray] = {}
    readers: list[asyncio.Task] = []

    def on_track(track, publication, participant):
        if track.kind != rtc.TrackKind.KIND_VIDEO:
            return

        async def read():
            async for ev in rtc.VideoStream(track, format=rtc.VideoBufferType.RGB24):
                f = ev.frame
                if (f.width, f.height) != (512, 512):
                    continue  # a simulcast layer below full size while it ramps up
                rgb = np.frombuffer(f.data, np.uint8).reshape(512, 512, 3)
                mouth.append((time.monotonic(), rgb[box].astype(np.int16)))
                if "speaking" in snapshot and "frame" not in snapshot:
                    snapshot["frame"] = rgb.copy()

        readers.append(asyncio.ensure_future(read()))

    viewer.on("track_subscribed", on_track)
    try:
        await viewer.connect(livekit_server.url, make_token(livekit_server, room, "viewer-face"))
        deadline = time.monotonic() + 20
        while len(mouth) < 25 and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        assert mouth, "no full-size video reached the viewer"
        t_speech = time.monotonic()
        handle = session.say("Hello! My name is Ava, and I am happy to meet you today.")
        await asyncio.sleep(1.0)
        snapshot["speaking"] = np.zeros(0)
        await asyncio.wait_for(handle.wait_for_playout(), 30)
        t_end = time.monotonic()
        await asyncio.sleep(2.0)
    finally:
        await shut_down(session, avatar, viewer, agent_room, readers=readers)

    def motion(t0: float, t1: float) -> float:
        crops = [c for t, c in mouth if t0 <= t <= t1]
        diffs = [np.abs(b - a).mean() for a, b in zip(crops, crops[1:])]
        return float(np.mean(diffs)) if diffs else 0.0

    speaking = motion(t_speech + 0.3, t_end - 0.2)
    resting = motion(t_end + 0.5, t_end + 2.0)
    print(f"\nmouth motion per frame: speaking {speaking:.2f}, resting after {resting:.2f}")
    assert speaking > 3 * resting
    assert speaking > 1.0
    if "frame" in snapshot:
        from PIL import Image

        ARTIFACTS.mkdir(exist_ok=True)
        Image.fromarray(snapshot["frame"]).save(ARTIFACTS / "avatar_received_speaking.png")
