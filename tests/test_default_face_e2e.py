"""The shipped face end to end: real lip-sync model and renderer, in a real room."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from livekit_avatar_plugin import ConversationState, VideoOptions
from livekit_avatar_plugin.keyless import LocalTTS
from livekit_avatar_plugin._pipeline import load_pipeline

from .rooms import speak_and_watch

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
    speaking, resting, mid, _ = await speak_and_watch(
        livekit_server,
        mouth_box(),
        tts=LocalTTS(),
        face_pipeline=None,  # the shipped lip-sync model and renderer
        video=VideoOptions(quality="auto", width=512, height=512),
    )
    print(f"\nmouth motion per frame: speaking {speaking:.2f}, resting after {resting:.2f}")
    assert speaking > 3 * resting
    assert speaking > 1.0
    if mid is not None:
        from PIL import Image

        ARTIFACTS.mkdir(exist_ok=True)
        Image.fromarray(mid).save(ARTIFACTS / "avatar_received_speaking.png")
