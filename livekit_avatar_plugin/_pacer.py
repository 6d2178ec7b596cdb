"""Audio is the clock: each video frame goes out when the audio slice it belongs to starts
playing, so the A/V offset does not depend on which of two queues filled first."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable

from livekit import rtc

from ._metrics import MetricsRecorder
from ._vp8_encoder import VP8EncodedSource

# Audio is the clock. The audio source holds about this much audio ahead of playout:
# enough to ride out a late frame on a busy machine, small enough that an interruption
# (which clears it) falls silent quickly.
_AUDIO_LEAD_S = 0.06
# WebRTC stamps audio with its capture time about this long after the slice leaves the
# audio source's queue, whatever its lead; browsers align audio and video by those stamps,
# so each frame is captured this much after its slice starts (benchmarks/browser_av_sync.py).
_AUDIO_STAMP_LATENCY_S = 0.058


class AudioClockedPacer:
    """Publishes each video frame exactly when the audio slice it belongs to starts playing.

    LiveKit's ``AVSynchronizer`` keeps separate audio and video queues; which one fills
    first decides a random A/V offset of up to a queue length per session. Here every
    frame pair is timed from the audio source's own queue: push the slice, read how long
    until it plays, and capture the frame at that moment.
    """

    def __init__(
        self,
        audio: rtc.AudioSource,
        video: rtc.VideoSource | VP8EncodedSource,
        *,
        video_delay_s: float = 0.0,
        on_published: Callable[[str, float, object], None] | None = None,
        frame_period_s: float = 0.04,
    ) -> None:
        self._audio = audio
        self._late_after_s = frame_period_s / 2
        self.metrics: MetricsRecorder | None = None
        self._video = video
        self._video_delay_s = video_delay_s
        self._on_published = on_published
        self._loop = asyncio.get_event_loop()
        self._pending: deque[asyncio.TimerHandle] = deque()
        self._frame: rtc.VideoFrame | None = None
        # When the audio queued so far will have finished playing (monotonic seconds).
        # Kept here rather than read from AudioSource.queued_duration, which undercounts
        # after an underrun (it subtracts the idle gap from the new chunk).
        self._play_end = 0.0
        self._speech_until = 0.0  # when the speech queued so far ends (monotonic seconds)
        self._hold: asyncio.Future[None] | None = None  # the producer's hold-back, cut short by wake()

    def stage_video(self, frame: rtc.VideoFrame) -> None:
        self._frame = frame

    def skip_idle(self) -> None:
        """A reply is about to start: drop the idle audio queued ahead of it, and the idle
        frames timed by it, so the reply is heard at once instead of after the queue's lead.
        Speech still queued (the end of the previous reply) is kept."""
        if self._speech_until > time.monotonic() or self._play_end <= time.monotonic():
            return
        self._audio.clear_queue()
        self._play_end = 0.0
        while self._pending:
            self._pending.popleft().cancel()

    async def push_audio(self, chunk: rtc.AudioFrame, *, speech: bool = False) -> float:
        """Queue one slice (and its staged frame); returns when the slice starts playing."""
        await self._audio.capture_frame(chunk)
        now = time.monotonic()
        if self._play_end < now:
            if self._play_end and self.metrics is not None:
                self.metrics.underrun()
            self._play_end = now
        starts_in = self._play_end - now
        self._play_end += chunk.duration
        if speech:
            self._speech_until = self._play_end
        frame, self._frame = self._frame, None
        if frame is not None:
            while self._pending and self._pending[0].cancelled():
                self._pending.popleft()
            due = now + starts_in + _AUDIO_STAMP_LATENCY_S + self._video_delay_s
            handle = self._loop.call_later(due - now, self._capture, frame, due)
            self._pending.append(handle)
        if self._on_published is not None:
            self._on_published("audio", now + starts_in + _AUDIO_STAMP_LATENCY_S, chunk)
        # Hold the producer back so the queue stays near its lead, unless speech arrives.
        excess = (self._play_end - time.monotonic()) - _AUDIO_LEAD_S
        if excess > 0:
            # (what asyncio.sleep costs: one future and one timer a frame)
            self._hold = hold = self._loop.create_future()
            timer = self._loop.call_later(excess, _release, hold)
            try:
                await hold
            finally:
                timer.cancel()
                self._hold = None
        return now + starts_in

    def wake(self) -> None:
        """A reply's first audio has arrived: let the producer go on now rather than after
        the rest of its hold-back (up to a frame), so its first frame is made at once."""
        if self._hold is not None:
            _release(self._hold)

    def queued_s(self) -> float:
        """Audio handed to the source that has not started playing yet."""
        return max(0.0, self._play_end - time.monotonic())

    def _capture(self, frame: rtc.VideoFrame, due: float) -> None:
        if self._pending:
            self._pending.popleft()
        self._video.capture_frame(frame)
        if self.metrics is not None:
            self.metrics.frame(late=time.monotonic() - due > self._late_after_s)
        if self._on_published is not None:
            self._on_published("video", time.monotonic(), frame)

    def clear(self) -> None:
        self._audio.clear_queue()
        self._play_end = self._speech_until = 0.0
        while self._pending:
            self._pending.popleft().cancel()
        self._frame = None


def _release(hold: asyncio.Future[None]) -> None:
    if not hold.done():
        hold.set_result(None)
