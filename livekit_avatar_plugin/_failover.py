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

A live avatar that falls behind (heavy loss on the agent-to-avatar link) hands a reply
over the same way (:meth:`FailoverAudioOutput.hand_over`): the agent's voice says the
rest of it, and the face takes the next reply.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from livekit import rtc
from livekit.agents.voice.io import AudioOutput, AudioOutputCapabilities

from . import _compat

logger = logging.getLogger("livekit_avatar_plugin.failover")


@dataclass
class _Segment:
    sink: AudioOutput  # where it plays: the face, or the agent's own track
    frames: list[rtc.AudioFrame] = field(default_factory=list)
    flushed: bool = False
    # Seconds of this segment already heard on the face before it moved; the new sink
    # counts from 0.
    offset: float = 0.0
    # The agent interrupted it: a report that it played to its end (the stream's end can
    # reach the avatar before the interruption does) is still an interruption.
    cleared: bool = False
    delivered_s: float = 0.0  # handed to its sink (capture returned)
    created_at: float = 0.0
    mark: object = None  # what ``mark_segment`` said when it went to the face
    claimed: bool = False  # being handed over: the face's reports of it are held back
    held: tuple[float | None, tuple[float, bool, str | None] | None] = (None, None)  # (start, result)
    started: bool = False  # playback_started passed on (a new sink's is not)
    result: tuple[float, bool, str | None] | None = None  # its report, once its sink made it

    @property
    def captured_s(self) -> float:
        return sum(f.duration for f in self.frames)


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
    track in ``room``, as LiveKit's RoomIO would have published it.

    Every segment remembers its sink; each sink's reports are matched to the segments it
    was given, in order, and passed on to the agent in the order the segments were made.
    A segment taken from the face is still reported by it once (so its own bookkeeping
    stays whole); that report is dropped here.
    """

    def __init__(self, primary: AudioOutput | None, *, room: rtc.Room, sample_rate: int) -> None:
        super().__init__(
            label="LocalAvatar",
            capabilities=AudioOutputCapabilities(pause=False),
            sample_rate=sample_rate,
        )
        self._room = room
        self._rate = sample_rate
        self._fallback: tuple[Any, asyncio.Task[None]] | None = None
        self._fallback_sink: AudioOutput | None = None
        self._keep_fallback = False  # made for hand-overs: stays published, ready for the next
        self._segments: deque[_Segment] = deque()  # not yet reported to the agent
        self._given: dict[AudioOutput, deque[_Segment]] = {}  # each sink's, awaiting its report
        self._handlers: dict[AudioOutput, tuple[Callable[[Any], None], Callable[[Any], None]]] = {}
        face = primary if primary is not None else _NullAudioOutput(sample_rate)
        self._face: AudioOutput | None = face  # None: failed over, no face yet
        self._face_waits = False  # the face is up, but the agent's voice ends what it has
        self._active: AudioOutput = face  # where a new segment goes
        self._closing: set[asyncio.Task[None]] = set()  # fallbacks being taken down
        self._handing: set[asyncio.Task[None]] = set()  # replies the face gave up by itself
        self._lock = asyncio.Lock()
        #: called as a segment goes to the face; its result is kept with it (``face_segment``)
        self.mark_segment: Callable[[], object] | None = None
        self._listen(face)

    def _listen(self, sink: AudioOutput) -> None:
        if sink in self._handlers:
            return

        def started(ev: Any) -> None:
            self._child_started(sink, ev)

        def finished(ev: Any) -> None:
            self._child_finished(sink, ev)

        sink.on("playback_started", started)
        sink.on("playback_finished", finished)
        self._handlers[sink] = (started, finished)
        self._given.setdefault(sink, deque())

    def _unlisten(self, sink: AudioOutput) -> None:
        handlers = self._handlers.pop(sink, None)
        if handlers is not None:
            sink.off("playback_started", handlers[0])
            sink.off("playback_finished", handlers[1])
        self._given.pop(sink, None)

    # -- AudioOutput ---------------------------------------------------------------------

    async def capture_frame(self, frame: rtc.AudioFrame) -> None:
        async with self._lock:  # never interleave with a failover's replay
            await super().capture_frame(frame)
            if not self._segments or self._segments[-1].flushed:
                if self._face_waits and not self._segments:
                    self._switch_back()
                self._open_segment()
            segment = self._segments[-1]
            segment.frames.append(frame)
            await segment.sink.capture_frame(frame)
            segment.delivered_s += frame.duration

    def _open_segment(self) -> None:
        segment = _Segment(self._active, created_at=time.monotonic())
        if self._active is self._face and self.mark_segment is not None:
            segment.mark = self.mark_segment()
        self._segments.append(segment)
        self._given[self._active].append(segment)

    def flush(self) -> None:
        super().flush()
        if self._segments and not self._segments[-1].flushed:
            self._segments[-1].flushed = True
            self._segments[-1].sink.flush()

    def clear_buffer(self) -> None:
        sinks = {id(s.sink): s.sink for s in self._segments} or {id(self._active): self._active}
        for segment in self._segments:
            segment.cleared = True
        for sink in sinks.values():
            sink.clear_buffer()

    def on_attached(self) -> None:
        self._active.on_attached()

    def on_detached(self) -> None:
        self._active.on_detached()

    # -- child events ----------------------------------------------------------------------

    def _child_started(self, sink: AudioOutput, ev: Any) -> None:
        given = self._given.get(sink)
        segment = given[0] if given else None
        if segment is not None:
            if segment.claimed and segment.sink is sink:
                segment.held = (ev.created_at, segment.held[1])
                return
            if segment.sink is not sink or segment.started:
                return  # handed over, or replayed after it had started
            segment.started = True
        self.on_playback_started(created_at=ev.created_at)

    def _child_finished(self, sink: AudioOutput, ev: Any) -> None:
        given = self._given.get(sink)
        if not given:
            return
        segment = given.popleft()
        if segment.sink is not sink:
            return  # handed over: its new sink reports it
        if segment.claimed:  # still the face's: its offset is 0, and kept for a fail-over
            segment.held = (segment.held[0], (ev.playback_position, ev.interrupted, ev.synchronized_transcript))
            return
        if ev.interrupted and not segment.cleared and sink is self._face:
            # Not the agent's interruption: the face gave the reply up by itself (heavy
            # loss, see _handover), and the agent's voice says the rest.
            segment.claimed, segment.offset = True, ev.playback_position
            task = asyncio.ensure_future(self.hand_over(segment, ev.playback_position))
            self._handing.add(task)
            task.add_done_callback(self._handing.discard)
            return
        segment.result = (
            segment.offset + ev.playback_position,
            ev.interrupted or segment.cleared,
            ev.synchronized_transcript,
        )
        self._report_ready()

    def _report_ready(self) -> None:
        while self._segments and self._segments[0].result is not None:
            position, interrupted, transcript = self._segments.popleft().result  # type: ignore[misc]
            self.on_playback_finished(
                playback_position=position,
                interrupted=interrupted,
                synchronized_transcript=transcript,
            )

    # -- failover and hand-over --------------------------------------------------------------

    def face_segment(self) -> _Segment | None:
        """The face's only open segment, if it has exactly one and no other is open: the
        one a live avatar can be playing (LiveKit says one reply at a time)."""
        if self._face is None or self._face_waits or len(self._segments) != 1:
            return None
        segment = self._segments[0]
        return segment if segment.sink is self._face else None

    async def warm(self) -> None:
        """Publish the agent's own track ahead of a hand-over (publishing it takes a
        while on a lossy link); it stays for the rest of the session."""
        async with self._lock:
            self._ensure_fallback(keep=True)

    def claim(self, segment: _Segment, heard_s: float) -> bool:
        """Before the face is asked to give ``segment`` up: its reports of it are held back
        until :meth:`hand_over` drops them or :meth:`release` passes them on. A fail-over
        meanwhile takes it up from ``heard_s``. False if it is not the face's to give up."""
        if self._face is None or segment.sink is not self._face or segment.result is not None:
            return False
        if segment.claimed or segment not in self._segments:
            return False
        segment.claimed, segment.offset = True, heard_s
        return True

    def release(self, segment: _Segment) -> None:
        """The face had finished ``segment`` after all: what it reported meanwhile goes on."""
        if not segment.claimed:
            return
        segment.claimed, segment.offset = False, 0.0
        (started_at, result), segment.held = segment.held, (None, None)
        if started_at is not None and not segment.started:
            segment.started = True
            self.on_playback_started(created_at=started_at)
        if result is not None:
            position, interrupted, transcript = result
            segment.result = (position, interrupted or segment.cleared, transcript)
            self._report_ready()

    async def hand_over(self, segment: _Segment, heard_s: float) -> None:
        """The avatar gave ``segment`` up after ``heard_s``: the agent's voice says the rest
        of it (and of the reply), and the face takes the next reply. ``segment`` may have
        been claimed already (:meth:`claim`)."""
        face = self._face
        if face is None or segment.sink is not face or segment.result is not None:
            return
        moved = [s for s in self._segments if s.sink is face and (s is segment or not s.claimed)]
        if segment not in moved:
            return
        # Claimed at once: the avatar's report that it gave up may arrive while a capture
        # holds the lock, and must not end the reply for the agent.
        for i, claimed in enumerate(moved):
            claimed.claimed, claimed.offset = True, heard_s if i == 0 else 0.0
        async with self._lock:
            moved = [s for s in moved if s.sink is face]  # not already moved by a fail-over
            if moved:
                if not moved[-1].flushed:
                    face.flush()  # closes the stream: the avatar stops discarding at its end
                fallback = self._ensure_fallback(keep=True)
                replayed = await self._move(moved, fallback, heard_s)
                self._active = fallback
                self._face_waits = self._face is face
                self._report_ready()
        if moved:
            logger.warning(
                "the avatar fell behind the agent's speech: the agent says the rest of this "
                "reply (%.2f s) with its own voice; the face takes the next one", replayed,
            )  # fmt: skip

    async def failover(self, heard_s: float) -> None:
        """Switch to the fallback sink; ``heard_s`` of the face's oldest open segment was heard."""
        dead = self._face
        if dead is None:
            return
        async with self._lock:
            self._face, self._face_waits = None, False
            moved = [s for s in self._segments if s.sink is dead]
            self._unlisten(dead)
            fallback = self._ensure_fallback(keep=self._keep_fallback)
            replayed = await self._move(moved, fallback, heard_s)
            self._active = fallback
            self._report_ready()
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

    async def _move(self, segments: list[_Segment], sink: AudioOutput, heard_s: float) -> float:
        """Give ``segments`` to ``sink``, the first from ``heard_s`` on; returns the seconds
        replayed. A segment heard whole already is finished at once."""
        replayed = 0.0
        for i, segment in enumerate(segments):
            if not segment.claimed:  # a claimed one knows where it was heard
                segment.offset = heard_s if i == 0 else 0.0
            segment.claimed, segment.held = False, (None, None)
            segment.sink = sink
            rest = _skip(segment.frames, segment.offset)
            if segment.flushed and not rest:
                segment.result = (segment.captured_s, segment.cleared, None)
                continue
            self._given[sink].append(segment)
            for frame in rest:
                replayed += frame.duration
                await sink.capture_frame(frame)
            if segment.flushed:
                sink.flush()
        return replayed

    def recover(self, primary: AudioOutput) -> None:
        """The face is back: the next reply goes to ``primary``. The reply under way, and
        any the fallback is still playing, finish where they started."""
        stale = self._face
        if stale is not None and stale is not primary:
            self._unlisten(stale)
            stale.on_detached()
        self._face, self._face_waits = primary, True
        self._listen(primary)

    @property
    def recovering(self) -> bool:
        """A face is up and waits for the next reply."""
        return self._face is not None and self._face_waits

    def _switch_back(self) -> None:
        assert self._face is not None
        self._active, self._face_waits = self._face, False
        logger.info("the face speaks again from this reply on")
        if self._keep_fallback:
            return
        task = asyncio.ensure_future(self.aclose())  # the agent's own track goes
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    def _ensure_fallback(self, *, keep: bool) -> AudioOutput:
        self._keep_fallback = self._keep_fallback or keep
        if self._fallback_sink is None:
            self._fallback_sink = self._make_fallback()
            self._listen(self._fallback_sink)
        return self._fallback_sink

    def _make_fallback(self) -> Any:
        output = _compat.participant_audio_output(self._room, sample_rate=self._rate)
        # start() returns once someone subscribes; audio waits for that, as with RoomIO.
        self._fallback = (output, asyncio.ensure_future(output.start()))
        return output

    async def aclose(self) -> None:
        """Unpublish the agent's own track, if the fail-over made one."""
        for task in self._handing:
            task.cancel()
        if self._closing and asyncio.current_task() not in self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)
        sink, self._fallback_sink = self._fallback_sink, None
        if sink is not None:
            self._unlisten(sink)
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
