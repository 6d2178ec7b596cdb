"""``mode="in_process"``: the agent's own participant publishes the face."""

from __future__ import annotations

from livekit import rtc
from livekit.agents.voice.avatar import QueueAudioOutput
from livekit.agents.voice.io import AudioOutput

from .._runtime import start_publisher
from .base import Transport


class InProcessTransport(Transport):
    fails_over = False  # the face and the voice share one process and one participant
    separate_participant = False

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self._room: rtc.Room | None = None

    @property
    def identity(self) -> str:
        return self._room.local_participant.identity if self._room is not None else self._identity

    async def start(self, room: rtc.Room, *, started_at: float) -> AudioOutput:
        self._room = room
        generator = await self._build_face()
        sink = QueueAudioOutput(sample_rate=self._options.audio_sample_rate)
        self._publisher = await start_publisher(
            room,
            generator,
            audio_receiver=sink,
            video=self._options.video,
            video_delay_s=self._options.video_delay_ms / 1000.0,
            started_at=started_at,
            emit_metrics=self._hooks.emit_metrics,
            on_published=self._hooks.on_published,
        )
        return sink
