"""The agent's audio sink, with failover: if the avatar dies, the agent speaks by itself.

``FailoverAudioOutput`` sits at the tail of the agent's audio chain. Normally it forwards
everything to the avatar (LiveKit's data-stream sink). It keeps the audio of every segment
the avatar has not yet reported finished, so when the avatar participant dies or never
joins it can switch to a sink that publishes from the agent's own participant, replay
exactly the part the user has not heard, and report playback for each segment itself:
no speech lost, none repeated, and ``say()`` / ``generate_reply()`` never hang waiting
for a ``playback_finished`` that a dead avatar cannot send. When the face comes back
(:meth:`FailoverAudioOutput.recover`), the first reply that starts once the fallback has
finished everything it was given goes to the face again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from livekit import rtc
from livekit.agents.voice.io import AudioOutput, AudioOutputCapabilities

from . import _compat

logger = logging.getLogger("livekit_avatar_plugin.failover")


@dataclass
class _Segment:
    frames: list[rtc.AudioFrame] = field(default_factory=list)
    flushed: bool = False
    # Seconds of this segment already heard before a failover; the new sink counts from 0.
    offset: float = 0.0
    # The agent interrupted it: a report that it played to its end (the stream's end can
    # reach the avatar before the interruption does) is still an interruption.
    cleared: bool = False


def _skip(frames: list[rtc.AudioFrame], seconds: float) -> list[rtc.AudioFrame]:
    """The audio after the first ``seconds``, cutting a frame if needed."""
    out: list[rtc.AudioFrame] = []
    remaining = seconds
    for frame in frames:
        if remaining <= 0:
            out.append(frame)
            continue
        if frame.duration <= remaining:
            remaining -= frame.duration
            continue
        cut = int(round(remaining * frame.sample_rate)) * frame.num_channels
        data = memoryview(frame.data)[cut:]
        out.append(
            rtc.AudioFrame(
                bytes(data), frame.sample_rate, frame.num_channels, len(data) // frame.num_channels
            )
        )
        remaining = 0
    return out


class FailoverAudioOutput(AudioOutput):
    """``primary`` is the avatar's sink; ``None``: the avatar never started, and the agent
    speaks by itself once :meth:`failover` is called. The fallback is the agent's own audio
    track in ``room``, as LiveKit's RoomIO would have published it."""

    def __init__(self, primary: AudioOutput | None, *, room: rtc.Room, sample_rate: int) -> None:
        super().__init__(
            label="LocalAvatar",
            capabilities=AudioOutputCapabilities(pause=False),
            sample_rate=sample_rate,
        )
        self._room = room
        self._rate = sample_rate
        self._fallback: tuple[Any, asyncio.Task[None]] | None = None
        primary = primary if primary is not None else _NullAudioOutput(sample_rate)
        self._segments: deque[_Segment] = deque()
        self._active = primary
        self._failed_over = False
        self._pending: AudioOutput | None = None  # a face back, waiting for the next reply
        self._closing: set[asyncio.Task[None]] = set()  # fallbacks being taken down
        self._lock = asyncio.Lock()
        self._listen(primary)

    def _listen(self, sink: AudioOutput) -> None:
        sink.on("playback_started", self._child_started)
        sink.on("playback_finished", self._child_finished)

    def _unlisten(self, sink: AudioOutput) -> None:
        sink.off("playback_started", self._child_started)
        sink.off("playback_finished", self._child_finished)

    # -- AudioOutput ---------------------------------------------------------------------

    async def capture_frame(self, frame: rtc.AudioFrame) -> None:
        async with self._lock:  # never interleave with a failover's replay
            await super().capture_frame(frame)
            if not self._segments or self._segments[-1].flushed:
                if self._pending is not None and not self._segments:
                    self._switch_back()
                self._segments.append(_Segment())
            self._segments[-1].frames.append(frame)
            await self._active.capture_frame(frame)

    def flush(self) -> None:
        super().flush()
        if self._segments and not self._segments[-1].flushed:
            self._segments[-1].flushed = True
            self._active.flush()

    def clear_buffer(self) -> None:
        for segment in self._segments:
            segment.cleared = True
        self._active.clear_buffer()

    def on_attached(self) -> None:
        self._active.on_attached()

    def on_detached(self) -> None:
        self._active.on_detached()

    # -- child events ----------------------------------------------------------------------

    def _child_started(self, ev) -> None:
        self.on_playback_started(created_at=ev.created_at)

    def _child_finished(self, ev) -> None:
        segment = self._segments.popleft() if self._segments else _Segment()
        self.on_playback_finished(
            playback_position=segment.offset + ev.playback_position,
            interrupted=ev.interrupted or segment.cleared,
            synchronized_transcript=ev.synchronized_transcript,
        )

    # -- failover --------------------------------------------------------------------------

    async def failover(self, heard_s: float) -> None:
        """Switch to the fallback sink; ``heard_s`` of the oldest open segment was heard."""
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.on_detached()  # it died before it spoke: the fallback goes on
        if self._failed_over:
            return
        async with self._lock:
            self._failed_over = True
            dead = self._active
            self._unlisten(dead)
            fallback = self._make_fallback()
            self._listen(fallback)
            self._active = fallback
            replayed = 0.0
            heard_whole: _Segment | None = None
            for i, segment in enumerate(self._segments):
                segment.offset = heard_s if i == 0 else 0.0
                rest = _skip(segment.frames, segment.offset)
                for frame in rest:
                    replayed += frame.duration
                    await fallback.capture_frame(frame)
                if segment.flushed and not rest:
                    heard_whole = segment  # the oldest, all of it heard: the fallback never plays it
                elif segment.flushed:
                    fallback.flush()
            if heard_whole is not None:
                self._segments.remove(heard_whole)
                self.on_playback_finished(
                    playback_position=sum(f.duration for f in heard_whole.frames), interrupted=False
                )
            logger.warning(
                "avatar unavailable: the agent now publishes its own audio "
                "(%d open segment(s), %.2f s replayed from where the user stopped hearing)",
                len(self._segments),
                replayed,
            )
        try:
            dead.on_detached()
        except Exception:  # noqa: BLE001 - the dead sink's cleanup is best effort
            logger.debug("detaching the avatar sink failed", exc_info=True)

    def recover(self, primary: AudioOutput) -> None:
        """The face is back: the next reply goes to ``primary``. The reply under way, and
        any the fallback is still playing, finish where they started."""
        stale, self._pending = self._pending, primary
        if stale is not None:
            stale.on_detached()

    @property
    def recovering(self) -> bool:
        """A face is back and waits for the next reply."""
        return self._pending is not None

    def _switch_back(self) -> None:
        primary, self._pending = self._pending, None
        assert primary is not None
        self._unlisten(self._active)
        self._listen(primary)
        self._active = primary
        self._failed_over = False
        logger.info("avatar back: this reply is spoken by the face again")
        task = asyncio.ensure_future(self.aclose())  # the agent's own track goes
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    def _make_fallback(self) -> Any:
        output = _compat.participant_audio_output(self._room, sample_rate=self._rate)
        # start() returns once someone subscribes; audio waits for that, as with RoomIO.
        self._fallback = (output, asyncio.ensure_future(output.start()))
        return output

    async def aclose(self) -> None:
        """Unpublish the agent's own track, if the fail-over made one."""
        if self._closing and asyncio.current_task() not in self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)
        fallback, self._fallback = self._fallback, None
        if fallback is None:
            return
        output, starting = fallback
        starting.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await starting
        publication = _compat.participant_audio_publication(output)
        with contextlib.suppress(Exception):
            await output.aclose()
        if publication is not None and self._room.isconnected():
            with contextlib.suppress(Exception):
                await self._room.local_participant.unpublish_track(publication.sid)


class _NullAudioOutput(AudioOutput):
    """Stands in for an avatar that never joined, until the failover replaces it."""

    def __init__(self, sample_rate: int) -> None:
        super().__init__(
            label="NoAvatar",
            capabilities=AudioOutputCapabilities(pause=False),
            sample_rate=sample_rate,
        )

    async def capture_frame(self, frame: rtc.AudioFrame) -> None:
        await super().capture_frame(frame)

    def flush(self) -> None:
        super().flush()

    def clear_buffer(self) -> None:
        pass
