"""The agent's speech on its way to a remote avatar (participant and dispatch modes).

LiveKit's ``DataStreamAudioOutput`` sends raw PCM; this one sends the same stream as Opus
(:mod:`.audio.opus`) when the avatar says it reads Opus (its ``lk.avatar.audio_codecs``
attribute) and libopus is here, and plain PCM otherwise, so it still talks to any
LiveKit avatar. Everything else (segments, playback events, interruptions) is LiveKit's.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from livekit import rtc
from livekit.agents.voice.avatar import DataStreamAudioOutput

from . import _compat
from ._audio import opus

logger = logging.getLogger("livekit_avatar_plugin.speech_stream")

# How far ahead of real time a segment's speech may be sent: TTS hands over a reply many
# times faster than it plays, and a burst per reply costs both processes CPU the avatars
# need (docs/benchmarks.md); two seconds keep the avatar fed through retransmissions.
SEND_AHEAD_S = 2.0


def avatar_reads_opus(participant: rtc.Participant | None) -> bool:
    if participant is None:
        return False
    codecs = participant.attributes.get(opus.CODECS_ATTRIBUTE, "")
    return opus.CODEC_NAME in codecs.split(",")


def codec_attributes() -> dict[str, str]:
    """What an avatar participant advertises about the speech it can read."""
    return {opus.CODECS_ATTRIBUTE: f"{opus.CODEC_NAME},pcm"} if opus.available() else {}


class _OpusWriter:
    """Wraps LiveKit's byte-stream writer: PCM written in, Opus packets sent."""

    def __init__(self, writer: rtc.ByteStreamWriter, sample_rate: int) -> None:
        self._writer = writer
        self._encoder = opus.SpeechEncoder(sample_rate)

    async def write(self, data: bytes) -> None:
        pcm = np.frombuffer(data, dtype=np.int16)
        # ~1.5 ms of CPU per 200 ms chunk, and a reply arrives at many times real time:
        # off the agent's event loop.
        packets = await asyncio.to_thread(self._encoder.encode, pcm)
        if packets:
            await self._writer.write(packets)

    async def aclose(self, *args: Any, **kwargs: Any) -> None:
        try:
            try:
                tail = self._encoder.finish()
            except opus.OpusError:  # closed already: a second aclose
                tail = b""
            if tail:
                await self._writer.write(tail)
        finally:
            self._encoder.close()
            await self._writer.aclose(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._writer, name)


class SpeechStreamOutput(DataStreamAudioOutput):
    """``DataStreamAudioOutput`` that compresses each segment when the avatar can read it.

    The parent opens one byte-stream writer per segment; ``_set_segment_writer`` wraps
    each new writer in an Opus encoder as the parent assigns it.
    """

    def __init__(
        self, room: rtc.Room, *, destination_identity: str, sample_rate: int, **kwargs: Any
    ) -> None:
        self.__writer: Any = None
        self.__segment_started_at: float | None = None
        self.__format: tuple[int, int] | None = None
        self.__room = room
        self.__destination = destination_identity
        self.__sample_rate = sample_rate
        self._opus_segments = 0  # segments sent as Opus
        #: how many ``playback_finished`` reports the avatar has sent, where this process
        #: can tell (``participant`` mode); then a retried RPC that had arrived is dropped
        self.reports_sent: Callable[[], int] | None = None
        #: where the avatar is elsewhere and says what it reported (``dispatch`` mode):
        #: ``judge_report(position, interrupted, deliver)`` calls ``deliver()`` for a
        #: report the avatar sent, now or once a beat vouches for it, and never for a repeat
        self.judge_report: Callable[[float, bool, Callable[[], object]], None] | None = None
        self.__reports_taken = 0
        super().__init__(
            room, destination_identity=destination_identity, sample_rate=sample_rate, **kwargs
        )

    async def capture_frame(self, frame: rtc.AudioFrame) -> None:
        self.__format = (frame.sample_rate, frame.num_channels)
        await self.__hold_back()
        await super().capture_frame(frame)

    async def __hold_back(self) -> None:
        """Keep the segment at most ``SEND_AHEAD_S`` ahead of its first word's playout."""
        if self.__segment_started_at is None:  # no segment open: nothing sent yet
            return
        played = time.monotonic() - self.__segment_started_at
        ahead = _compat.pushed_duration(self) - played
        if ahead > SEND_AHEAD_S:
            await asyncio.sleep(ahead - SEND_AHEAD_S)

    def _get_segment_writer(self) -> Any:
        return self.__writer

    def _set_segment_writer(self, writer: Any) -> None:
        self.__segment_started_at = time.monotonic() if writer is not None else None
        if writer is not None and self.__use_opus():
            writer = _OpusWriter(writer, self.__sample_rate)
            if self._opus_segments == 0:
                logger.info(
                    "sending speech to %s as Opus at %d kbit/s", self.__destination, opus.BITRATE // 1000
                )
            self._opus_segments += 1
        self.__writer = writer

    def _take_report(self, data: rtc.RpcInvocationData, deliver: Callable[[], object]) -> bool:
        """False for a report the avatar never sent a second time: LiveKit's receiver
        retries an RPC whose answer was lost (a lossy link), and the agent would take the
        repeat for the next reply's end."""
        if data.caller_identity != self.__destination:
            return True  # LiveKit's handler refuses it
        if self.judge_report is not None:
            try:
                report = json.loads(data.payload)
                position, interrupted = float(report["playback_position"]), bool(report["interrupted"])
            except (ValueError, KeyError, TypeError):
                return True  # LiveKit's handler says what is wrong with it
            self.judge_report(position, interrupted, deliver)
            return False
        if self.reports_sent is not None and self.__reports_taken >= self.reports_sent():
            logger.warning("dropped a playback report the avatar sent once and the link delivered twice")
            return False
        self.__reports_taken += 1
        return True

    def __use_opus(self) -> bool:
        if not opus.available() or self.__format != (self.__sample_rate, 1):
            return False
        return avatar_reads_opus(self.__room.remote_participants.get(self.__destination))


_compat.intercept_segment_writer(
    SpeechStreamOutput, SpeechStreamOutput._get_segment_writer, SpeechStreamOutput._set_segment_writer
)
_compat.filter_playback_finished(SpeechStreamOutput, SpeechStreamOutput._take_report)
