"""The plugin's own VP8 encoder for single-layer tracks, without a room.

What it hands to LiveKit's pre-encoded source is recorded and decoded back with libvpx.
"""

from __future__ import annotations

import asyncio
import logging

import av
import numpy as np
import pytest
from livekit import rtc

from livekit_avatar_plugin import _vp8_encoder as vp8_encoder
from livekit_avatar_plugin._vp8_encoder import VP8EncodedSource

W, H = 320, 240


def rgb_frame(shade: int, width: int = W, height: int = H) -> rtc.VideoFrame:
    image = np.zeros((height, width, 3), np.uint8)
    image[..., 0] = shade
    image[:, : width // 2, 1] = 255 - shade  # an edge, so frames differ in structure too
    return rtc.VideoFrame(width, height, rtc.VideoBufferType.RGB24, image.tobytes())


class Recorder:
    """Stands in for ``EncodedVideoSource.capture_frame`` and ``take_feedback``."""

    def __init__(self, source: VP8EncodedSource) -> None:
        self.frames: list[rtc.EncodedVideoFrame] = []
        self.feedback: list[rtc.EncodedVideoSourceFeedback] = []
        source.source.capture_frame = self._capture
        source.source.take_feedback = self._take

    def _capture(self, frame: rtc.EncodedVideoFrame) -> bool:
        self.frames.append(frame)
        return True

    def _take(self) -> rtc.EncodedVideoSourceFeedback:
        if self.feedback:
            return self.feedback.pop(0)
        return rtc.EncodedVideoSourceFeedback(keyframe_requested=False, rate_control=None)


async def feed(source: VP8EncodedSource, recorder: Recorder, shades, *, fps: float = 25.0):
    """Capture frames at ``fps``, waiting for each to be encoded (the worker keeps only the
    newest frame, so a test that outpaces it would see frames skipped)."""
    for shade in shades:
        before = source.frames_encoded
        source.capture_frame(rgb_frame(shade))
        for _ in range(200):
            if source.frames_encoded > before or source._errors:
                break
            await asyncio.sleep(0.005)
        await asyncio.sleep(1 / fps)


def decode(frames: list[rtc.EncodedVideoFrame]) -> list[np.ndarray]:
    decoder = av.CodecContext.create("libvpx", "r")
    images = []
    for frame in frames:
        for decoded in decoder.decode(av.Packet(frame.data)):
            images.append(decoded.to_ndarray(format="rgb24"))
    return images


@pytest.fixture
async def encoder():
    source = VP8EncodedSource(W, H, 25.0, 500_000)
    recorder = Recorder(source)
    yield source, recorder
    await source.aclose()


async def test_frames_come_out_as_decodable_vp8_starting_with_a_key_frame(encoder):
    source, recorder = encoder
    await feed(source, recorder, range(0, 200, 20))
    frames = recorder.frames
    assert len(frames) == 10
    assert frames[0].frame_type == rtc.EncodedFrameType.ENCODED_FRAME_KEY
    assert all(f.frame_type == rtc.EncodedFrameType.ENCODED_FRAME_DELTA for f in frames[1:])
    assert all(f.codec == rtc.VideoCodec.VP8 and (f.width, f.height) == (W, H) for f in frames)
    stamps = [f.timestamp_us for f in frames]
    assert stamps == sorted(set(stamps)), "capture stamps must increase"
    images = decode(frames)
    assert len(images) == 10 and images[0].shape == (H, W, 3)
    # The content survives: red follows the shade fed in (lossy, so within a margin).
    assert abs(float(images[-1][..., 0].mean()) - 180) < 12


async def test_a_subscribers_key_frame_request_is_answered_with_a_key_frame(encoder):
    source, recorder = encoder
    await feed(source, recorder, [10, 20, 30])
    recorder.feedback.append(rtc.EncodedVideoSourceFeedback(keyframe_requested=True, rate_control=None))
    await feed(source, recorder, [40, 50])
    kinds = [f.frame_type == rtc.EncodedFrameType.ENCODED_FRAME_KEY for f in recorder.frames]
    assert kinds == [True, False, False, True, False]
    assert len(decode(recorder.frames)) == 5


async def test_a_frame_of_the_wrong_size_is_skipped_and_the_stream_goes_on(encoder, caplog):
    source, recorder = encoder
    caplog.set_level(logging.ERROR, logger="livekit_avatar_plugin.vp8_encoder")
    await feed(source, recorder, [10])
    source.capture_frame(rgb_frame(20, width=W * 2))
    await feed(source, recorder, [30, 40])
    assert len(recorder.frames) == 3
    assert "does not match the encoder's 320x240" in caplog.text
    assert len(decode(recorder.frames)) == 3


async def test_webrtc_targets_are_followed_only_when_the_link_is_short(encoder, monkeypatch):
    source, recorder = encoder
    monkeypatch.setattr(vp8_encoder, "_STARTUP_GRACE_S", 0.0)
    monkeypatch.setattr(vp8_encoder, "_RETARGET_MIN_INTERVAL_S", 0.0)

    def target(bps: int) -> None:
        recorder.feedback.append(
            rtc.EncodedVideoSourceFeedback(False, rtc.EncodedRateControl(bps, 25.0))
        )

    await feed(source, recorder, [10])
    # While it probes, WebRTC asks for ~83 % of the cap: the pinned preset keeps the cap.
    target(416_000)
    await feed(source, recorder, [20])
    assert source._bitrate == 500_000
    # A link that carries 40 % of the cap is followed (a fresh encoder: a key frame).
    target(200_000)
    await feed(source, recorder, [30, 40])
    assert source._bitrate == 200_000
    assert recorder.frames[2].frame_type == rtc.EncodedFrameType.ENCODED_FRAME_KEY
    # And back to the cap once the link recovers.
    target(480_000)
    await feed(source, recorder, [50])
    assert source._bitrate == 500_000
    assert len(decode(recorder.frames)) == 5


async def test_the_first_targets_are_the_sdks_start_value_and_are_not_followed(encoder):
    source, recorder = encoder
    recorder.feedback.append(
        rtc.EncodedVideoSourceFeedback(False, rtc.EncodedRateControl(200_000, 25.0))
    )
    await feed(source, recorder, [10, 20])
    assert source._bitrate == 500_000
