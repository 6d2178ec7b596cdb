"""The avatar's VP8, encoded here (libvpx, through PyAV) for a single-layer track.

Why not WebRTC's own encoder: a pinned preset (``high``, ``medium``, ``low``) promises its
bitrate from the first frame, and with WebRTC's VP8 the first two seconds ramp instead
(docs/benchmarks.md).
Two things inside libwebrtc cause it, neither reachable through LiveKit's SDK: it gives
the encoder ~5/6 of the cap for the first ~3 s (its bandwidth probes count as overhead),
and its VP8 rate control repays a subscriber's key frame out of the next second's
frames. Here the encoder is given the cap from the first frame, and every key frame a
subscriber asks for starts a fresh rate-control buffer that already holds room for it.

WebRTC still paces and protects the packets; its key-frame requests and congestion
targets arrive as feedback (``take_feedback``), and a target well below the cap (a link
that really is short) is followed, so ``high`` never floods a slow link for long.
"""

from __future__ import annotations

import asyncio
import fractions
import logging
import threading
import time

import numpy as np
from livekit import rtc

logger = logging.getLogger("livekit_avatar_plugin.vp8_encoder")

# A target from WebRTC below this share of the cap is a real shortage: follow it.
# (While it probes the link WebRTC asks for ~83 % of the cap; that is not one.)
_FOLLOW_BELOW = 0.75
# WebRTC's first targets are the SDK's start value (1 Mbps), not a measurement.
_STARTUP_GRACE_S = 2.0
# A change of encoder bitrate costs a key frame (PyAV cannot retune an open encoder).
_RETARGET_MIN_INTERVAL_S = 2.0
_RETARGET_MIN_CHANGE = 0.2
# Key frames a subscriber asks for within this long of the last fresh encoder reuse it.
_FRESH_ENCODER_MIN_INTERVAL_S = 0.25
_MIN_BITRATE = 150_000
# The rate-control buffer: one second of the bitrate, full at the start, and a key
# frame allowed up to 5 frames' budget. A key frame then takes what the buffer holds
# above its optimum (5/6) and the frames after it keep the full rate (a 1 s buffer that
# starts half full, libvpx's default, spends the next second paying it back).
_BUFFER_S = 1.0
_MAX_INTRA_PCT = 500
_LIBVPX_OPTIONS = {
    "deadline": "realtime",
    # Negative: libvpx picks its speed to fit the frame interval, as WebRTC sets it up.
    "cpu-used": "-6",
    "lag-in-frames": "0",
    "error-resilient": "1",
    "auto-alt-ref": "0",
    "static-thresh": "1",
    "undershoot-pct": "95",
    "overshoot-pct": "15",
    "qmin": "2",
    "qmax": "56",
    "g": "100000",  # key frames only when a subscriber asks (WebRTC does the same)
    # One thread: a second costs ~10 % more CPU, and sessions share the machine's cores.
    "threads": "1",
}


class VP8EncodedSource:
    """Takes raw frames like ``rtc.VideoSource`` and publishes VP8 through ``source``.

    ``capture_frame`` runs on the event loop: it stamps the frame and converts it to I420
    (as WebRTC's source does). A worker thread encodes the newest frame; if it falls
    behind, older frames are skipped, never queued, so video cannot drift behind audio.
    """

    def __init__(self, width: int, height: int, fps: float, max_bitrate: int) -> None:
        import av  # PyAV: a dependency of livekit-agents; imported here to keep startup light

        self._av = av
        self.source = rtc.EncodedVideoSource(width, height)
        self._width, self._height, self._fps = width, height, fps
        self._cap = max_bitrate
        self._bitrate = max_bitrate
        self._cond = threading.Condition()
        self._staged: tuple[rtc.VideoFrame, int] | None = None  # (I420 frame, capture µs)
        self._closed = False
        # Opened now, so a missing or broken libvpx shows at construction, not as a
        # session without video.
        self._encoder = self._open_encoder(max_bitrate)
        self._encoder_opened_at = 0.0
        self._retargeted_at = 0.0
        self._started_at: float | None = None
        self._pts = 0
        self._errors = 0
        self.frames_encoded = 0
        self._thread = threading.Thread(target=self._run, name="avatar-vp8-encoder", daemon=True)
        self._thread.start()

    # -- event loop side -----------------------------------------------------------------

    def capture_frame(self, frame: rtc.VideoFrame) -> None:
        if (frame.width, frame.height) != (self._width, self._height):
            self._log_error(
                ValueError(
                    f"frame {frame.width}x{frame.height} does not match the encoder's "
                    f"{self._width}x{self._height}"
                )
            )
            return
        # libyuv's conversion (~0.4 ms at 720p) also copies the frame out of the caller's
        # buffer, which the frame ring reuses.
        i420 = frame.convert(rtc.VideoBufferType.I420)
        with self._cond:
            # A frame staged and not taken yet is replaced: the newest frame wins.
            # The capture moment, as WebRTC's own source would stamp it; encoding comes after.
            self._staged = (i420, time.monotonic_ns() // 1000)
            self._cond.notify()

    async def aclose(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()
        await asyncio.to_thread(self._thread.join, 2.0)
        await self.source.aclose()

    # -- worker thread -------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._cond:
                while self._staged is None and not self._closed:
                    self._cond.wait()
                if self._closed:
                    self._encoder = None
                    return
                staged, self._staged = self._staged, None
                assert staged is not None
                i420, ts_us = staged
            try:
                self._encode(i420, ts_us)
            except Exception as exc:  # noqa: BLE001 - the worker outlives any one frame
                self._log_error(exc)
                self._encoder = None  # a fresh encoder (and key frame) for the next frame

    def _encode(self, i420: rtc.VideoFrame, ts_us: int) -> None:
        now = time.monotonic()
        if self._started_at is None:
            self._started_at = self._encoder_opened_at = now
        feedback = self.source.take_feedback()
        key = self._encoder is None
        if feedback.rate_control is not None:
            key |= self._follow_target(feedback.rate_control.target_bitrate_bps, now)
        if feedback.keyframe_requested:
            key = True
            if now - self._encoder_opened_at >= _FRESH_ENCODER_MIN_INTERVAL_S:
                self._encoder = None
        if self._encoder is None:
            self._encoder = self._open_encoder(self._bitrate)
            self._encoder_opened_at = now
        planes = np.frombuffer(i420.data, np.uint8).reshape(self._height * 3 // 2, self._width)
        frame = self._av.VideoFrame.from_ndarray(planes, format="yuv420p")
        frame.pts = self._pts
        self._pts += 1
        if key:
            frame.pict_type = self._av.video.frame.PictureType.I
        for packet in self._encoder.encode(frame):
            is_key = bool(packet.is_keyframe)
            self.source.capture_frame(
                rtc.EncodedVideoFrame(
                    data=bytes(packet),
                    width=self._width,
                    height=self._height,
                    codec=rtc.VideoCodec.VP8,
                    frame_type=rtc.EncodedFrameType.ENCODED_FRAME_KEY
                    if is_key
                    else rtc.EncodedFrameType.ENCODED_FRAME_DELTA,
                    timestamp_us=ts_us,
                )
            )
        self.frames_encoded += 1

    def _follow_target(self, requested_bps: int, now: float) -> bool:
        """Adopt WebRTC's congestion target when it says the link is short of the cap.

        Returns whether the encoder must be reopened at a new bitrate."""
        if self._started_at is None or now - self._started_at < _STARTUP_GRACE_S:
            return False
        wanted = self._cap if requested_bps >= _FOLLOW_BELOW * self._cap else requested_bps
        wanted = max(_MIN_BITRATE, min(self._cap, wanted))
        if abs(wanted - self._bitrate) < _RETARGET_MIN_CHANGE * self._bitrate:
            return False
        if now - self._retargeted_at < _RETARGET_MIN_INTERVAL_S:
            return False
        logger.info("video bitrate %d -> %d kbps (WebRTC's target %d kbps)",
                    self._bitrate // 1000, wanted // 1000, requested_bps // 1000)  # fmt: skip
        self._bitrate, self._retargeted_at = wanted, now
        self._encoder = None
        return True

    def _open_encoder(self, bitrate: int):
        ctx = self._av.CodecContext.create("libvpx", "w")
        ctx.width, ctx.height, ctx.pix_fmt = self._width, self._height, "yuv420p"
        rate = fractions.Fraction(self._fps).limit_denominator(1001)
        ctx.time_base, ctx.framerate = 1 / rate, rate
        ctx.bit_rate = bitrate
        buffer_bits = str(int(bitrate * _BUFFER_S))
        ctx.options = {
            **_LIBVPX_OPTIONS,
            "minrate": str(bitrate),
            "maxrate": str(bitrate),  # with minrate: constant bitrate
            "bufsize": buffer_bits,
            "rc_init_occupancy": buffer_bits,
            "max-intra-rate": str(_MAX_INTRA_PCT),
        }
        ctx.open()
        return ctx

    def _log_error(self, exc: BaseException) -> None:
        # A bad frame is skipped and the session goes on; the log stays readable.
        self._errors += 1
        if self._errors <= 3 or self._errors % 100 == 0:
            logger.error("VP8 encoder skipped a frame (%d so far): %s", self._errors, exc)
