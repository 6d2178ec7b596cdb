"""Builds a running face in one place: generator, metrics and publisher, wired once.

Every transport of :class:`~livekit_avatar_plugin.AvatarSession` and the dispatch worker
start their face here, so the wiring cannot drift between modes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from livekit import rtc
from livekit.agents.metrics.base import AvatarMetrics
from livekit.agents.voice.avatar import AudioReceiver

from ._config import VideoOptions
from ._generator import AvatarVideoGenerator
from ._metrics import MetricsRecorder
from ._publisher import AvatarPublisher
from ._pipeline import FacePipeline, build_generator

PROVIDER = "livekit-avatar-plugin"


async def build_face(pipeline: FacePipeline, *, video: VideoOptions, sample_rate: int) -> AvatarVideoGenerator:
    """The session's generator (motion stream and renderer made off the event loop)."""
    return await build_generator(
        pipeline, width=video.width, height=video.height, fps=video.fps, sample_rate=sample_rate
    )


async def start_publisher(
    room: rtc.Room,
    generator: AvatarVideoGenerator,
    *,
    audio_receiver: AudioReceiver,
    speech_sender: str | None = None,
    video: VideoOptions,
    video_delay_s: float,
    started_at: float,
    emit_metrics: Callable[[AvatarMetrics], Any],
    on_published: Callable[[str, float, object], None] | None = None,
    on_died: Callable[[str], None] | None = None,
) -> AvatarPublisher:
    """Publish ``generator``'s face in ``room``, fed by ``audio_receiver`` with the speech of
    ``speech_sender`` (the agent: nobody else's is played); metrics go to ``emit_metrics``.
    If starting fails, everything started is closed again."""
    metrics = MetricsRecorder(
        emit_metrics,
        provider=PROVIDER,
        started_at=started_at,
        counters=lambda: (generator.stats.underruns, generator.stats.render_errors),
    )
    publisher = AvatarPublisher(
        room,
        audio_receiver=audio_receiver,
        speech_sender=speech_sender,
        generator=generator,
        video=video,
        metrics=metrics,
        video_delay_s=video_delay_s,
        on_published=on_published,
        on_died=on_died,
    )
    try:
        await publisher.start()
    except BaseException:
        await publisher.aclose()
        raise
    return publisher
