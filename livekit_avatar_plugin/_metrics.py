"""Per-session avatar metrics, emitted as LiveKit ``metrics_collected`` events and logged.

``LocalAvatarMetrics`` extends LiveKit's ``AvatarMetrics`` so it travels through the
agent session's usual metrics pipeline (usage collectors, OpenTelemetry) unchanged. Each
event carries the fields relevant to its ``event``; the rest stay ``None``.
"""

from __future__ import annotations

import logging
import time
from typing import Literal

from livekit.agents.metrics.base import AvatarMetrics, Metadata

logger = logging.getLogger("livekit_avatar_plugin.metrics")

MetricsEvent = Literal["joined", "speech", "interruption", "periodic", "closed"]


class LocalAvatarMetrics(AvatarMetrics):
    event: MetricsEvent
    join_latency_s: float | None = None
    """``start()`` until the avatar's audio and video tracks are published."""
    time_to_first_frame_s: float | None = None
    """``start()`` until the first video frame went out."""
    first_audio_to_first_frame_s: float | None = None
    """First audio of a speech segment reaching the avatar until its first lip-synced frame."""
    interruption_to_silence_s: float | None = None
    """Interruption request reaching the avatar until its audio output is silent."""
    delivered_fps: float | None = None
    """Frames published per second since the previous report."""
    late_frames: int | None = None
    """Frames published more than half a frame after their audio started (since last report)."""
    audio_underruns: int | None = None
    """Times speech audio was not ready in time and silence filled in (since last report)."""
    render_errors: int | None = None
    session_duration_s: float | None = None
    close_reason: str | None = None


class MetricsRecorder:
    """Collects timings from the publisher and emits ``LocalAvatarMetrics``."""

    PERIOD_S = 30.0

    def __init__(self, emit, *, provider: str, started_at: float, counters=None) -> None:
        """``counters()`` returns the generator's cumulative (underruns, render_errors)."""
        self._emit = emit
        self._counters = counters or (lambda: (0, 0))
        self._seen_counters = (0, 0)
        self._published_at: float | None = None
        self._provider = provider
        self._started_at = started_at
        self._frames = 0
        self._late = 0
        self._underruns = 0
        self._render_errors = 0
        self._window_start = started_at
        self._segment_audio_at: float | None = None
        self._joined_sent = False

    def _send(self, **fields) -> None:
        metrics = LocalAvatarMetrics(
            timestamp=time.time(), metadata=Metadata(model_provider=self._provider), **fields
        )
        shown = {k: v for k, v in fields.items() if v is not None}
        logger.info("avatar metrics %s", shown)
        self._emit(metrics)

    # Hooks called by the publisher ------------------------------------------------------

    def published(self, at: float) -> None:
        self._published_at = at

    def segment_audio(self, at: float) -> None:
        if self._segment_audio_at is None:
            self._segment_audio_at = at

    def first_speech_frame(self, at: float) -> None:
        if self._segment_audio_at is not None:
            self._send(event="speech", first_audio_to_first_frame_s=at - self._segment_audio_at)
            self._segment_audio_at = None

    def segment_ended(self) -> None:
        self._segment_audio_at = None

    def interrupted(self, requested_at: float, silent_at: float) -> None:
        self._segment_audio_at = None
        self._send(event="interruption", interruption_to_silence_s=silent_at - requested_at)

    def frame(self, *, late: bool) -> None:
        # The first frame a viewer can get: with a single-layer track, frames flow a while
        # before the tracks are opened to subscribers (see AvatarPublisher).
        if not self._joined_sent and self._published_at is not None:
            self._joined_sent = True
            now = time.monotonic()
            self._send(
                event="joined",
                join_latency_s=self._published_at - self._started_at,
                time_to_first_frame_s=now - self._started_at,
            )
        self._frames += 1
        self._late += late
        now = time.monotonic()
        if now - self._window_start >= self.PERIOD_S:
            self._flush_window(now, event="periodic")

    def underrun(self) -> None:
        self._underruns += 1

    def _flush_window(self, now: float, *, event: MetricsEvent, **extra) -> None:
        elapsed = max(now - self._window_start, 1e-6)
        underruns, errors = self._counters()
        self._underruns += underruns - self._seen_counters[0]
        self._render_errors += errors - self._seen_counters[1]
        self._seen_counters = (underruns, errors)
        self._send(
            event=event,
            delivered_fps=self._frames / elapsed,
            late_frames=self._late,
            audio_underruns=self._underruns,
            render_errors=self._render_errors,
            **extra,
        )
        self._frames = self._late = self._underruns = self._render_errors = 0
        self._window_start = now

    def closed(self, reason: str) -> None:
        now = time.monotonic()
        self._flush_window(
            now, event="closed", session_duration_s=now - self._started_at, close_reason=reason
        )
