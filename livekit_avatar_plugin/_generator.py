"""Audio in, synchronised audio and video frames out.

:class:`AvatarVideoGenerator` is LiveKit's ``VideoGenerator``: the agent's speech goes in
through :meth:`push_audio`; iterating it yields, for every video frame, exactly one
``1/fps`` slice of audio, so the synchroniser downstream keeps lips and sound locked.
When there is no speech it keeps yielding idle frames paired with silence: the video track
exists before the first word (LiveKit's agent waits for it) and the audio timeline never
jumps when speech starts.

The face is produced by two pluggable parts, both run off the event loop:

* a :class:`MouthMotion` turns audio into mouth channels (the lip-sync model);
* a :class:`FrameRenderer` turns mouth channels, conversation state and time into RGB.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np
from livekit import rtc
from livekit.agents.voice.avatar import AudioSegmentEnd, VideoGenerator

from ._audio.input import AudioInputError, dc_free, frame_to_mono
from ._render.motion import PITCH_KEY, frame_pitch
from ._state import ConversationState

logger = logging.getLogger("livekit_avatar_plugin.generator")

# Mouth frames ahead offered to a renderer that looks ahead: 80 ms, what the lip-sync
# model's lookahead (77 ms) makes known in time.
LOOK_AHEAD_FRAMES = 2
# Audio already queued is read by the mouth model in calls of up to this much.
_BATCH_S = 0.2


# userdata key of silence the generator inserts inside a reply when its audio is late.
FILLER = "lk_avatar_filler"
_executors: dict[str, ThreadPoolExecutor] = {}
_executors_lock = threading.Lock()


def _process_executor(name: str) -> ThreadPoolExecutor:
    """One thread per kind of work (lip-sync model, drawing), shared by every session in
    the process. Measured with four 512x512 avatars on two cores: one drawing thread
    spends 1.6 ms of CPU per frame, four (one per session) 3.5 ms, the difference lost to
    threads handing the GIL back and forth between numpy calls. One thread also keeps each
    session's calls in order. A session's work is short (~1.5 ms a frame), so queueing
    behind other sessions costs little; a renderer that stalls does hold the others up,
    and they repeat their last frame meanwhile, as a stalled session does."""
    with _executors_lock:
        executor = _executors.get(name)
        if executor is None:
            executor = _executors[name] = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        return executor


@runtime_checkable
class MouthMotion(Protocol):
    """Streaming audio-to-mouth model: frame ``i`` describes time ``i / fps``."""

    @property
    def fps(self) -> float: ...

    @property
    def channels(self) -> tuple[str, ...]: ...

    def push(self, pcm: np.ndarray, sample_rate: int) -> np.ndarray:
        """Feed audio; return the ``[k, channels]`` mouth frames that became ready."""

    def flush(self) -> np.ndarray:
        """End of segment: return the frames still held back by the lookahead."""

    def reset(self) -> None:
        """Forget everything (interruption)."""


@runtime_checkable
class FrameRenderer(Protocol):
    """Draws one ``(height, width, 3)`` uint8 RGB frame of the avatar.

    A renderer may also offer ``render_rgba`` with the same arguments, returning
    ``(height, width, 4)`` RGBA; the generator then uses it, which spares a repacking of
    every frame (``FaceRenderer`` draws RGBA natively). A renderer with ``follows_pitch``
    true also gets each speech frame's f0 in Hz (0: unvoiced) in ``mouth[PITCH_KEY]``.
    """

    def render(
        self,
        mouth: Mapping[str, float],
        state: ConversationState,
        t: float,
        energy: float = 0.0,
    ) -> np.ndarray: ...


@dataclass
class GeneratorStats:
    """Counters the session reports as metrics."""

    frames: int = 0
    speech_frames: int = 0
    render_errors: int = 0
    underruns: int = 0
    segments: int = 0
    interruptions: int = 0
    render_seconds: float = 0.0
    # Frames shown again because the renderer was still busy when their time came.
    dropped_frames: int = 0
    # Audio chunks rejected as unplayable, and chunks the mouth model could not read.
    bad_input: int = 0
    motion_errors: int = 0
    audio_only: bool = False


class _Segment:
    """The speech segment being played: output-rate audio and its mouth frames."""

    __slots__ = ("audio", "audio_len", "ended", "mouth", "next_frame", "rate", "resampler")

    def __init__(self, channels: int) -> None:
        self.audio = np.zeros(0, dtype=np.int16)
        self.audio_len = 0
        self.mouth = np.zeros((0, channels), dtype=np.float32)
        self.ended = False
        self.next_frame = 0
        self.resampler: rtc.AudioResampler | None = None
        self.rate = 0  # input rate the resampler was made for

    def append_audio(self, pcm: np.ndarray) -> None:
        need = self.audio_len + pcm.size
        if need > self.audio.size:
            grown = np.zeros(max(need, self.audio.size * 2, 48000), dtype=np.int16)
            grown[: self.audio_len] = self.audio[: self.audio_len]
            self.audio = grown
        self.audio[self.audio_len : need] = pcm
        self.audio_len = need

    def append_mouth(self, frames: np.ndarray) -> None:
        if frames.size:
            self.mouth = np.concatenate([self.mouth, frames.astype(np.float32, copy=False)])


def _energy(chunk: np.ndarray) -> float:
    """Loudness in [0, 1]: -50 dBFS (silence) to -10 dBFS (loud speech)."""
    if chunk.size == 0:
        return 0.0
    x = dc_free(chunk)
    rms = math.sqrt(float(np.dot(x, x)) / chunk.size)
    db = 20.0 * math.log10(rms / 32768.0 + 1e-9)
    return min(1.0, max(0.0, (db + 50.0) / 40.0))


class AvatarVideoGenerator(VideoGenerator):
    """Turns the agent's audio into interleaved video and audio frames.

    One generator serves one session. The mouth model (and resampling) and the renderer
    run on the process's lip-sync and drawing threads, so each stateful part is called in
    order and never on the event loop, and a stalled renderer never holds up the audio: a frame
    whose render is not done within ``render_budget_s`` is shown as the last good frame
    again and the audio goes on, on time. The default budget (100 ms) rides out the
    ordinary hiccups of a busy machine with frames and audio still paired (the
    publisher's audio lead absorbs most of it) and drops frames only in a real stall.

    A frame the renderer fails on is logged and replaced by the last good frame; after
    ``max_render_failures`` failures in a row the renderer is given up on and the
    generator goes on with audio only (``on_audio_only`` is called once).

    Audio is checked as it is pushed (:mod:`.audio.input`): unusable chunks raise
    :class:`AudioInputError`, which names the problem, and never reach the frame loop.
    """

    def __init__(
        self,
        *,
        motion: MouthMotion,
        renderer: FrameRenderer,
        width: int,
        height: int,
        fps: float = 25.0,
        sample_rate: int = 24000,
        on_render_error: Callable[[BaseException], None] | None = None,
        max_in_flight_s: float = 0.8,
        render_budget_s: float = 0.1,
        max_render_failures: int = 25,
        on_audio_only: Callable[[str], None] | None = None,
    ) -> None:
        """``max_in_flight_s`` bounds how long a yielded frame may wait before it is
        captured (the publisher's audio lead plus any video delay); frame buffers are
        recycled after that long, so it must cover the publisher's queueing."""
        samples_per_frame = sample_rate / fps
        if abs(samples_per_frame - round(samples_per_frame)) > 1e-9:
            raise ValueError(
                f"fps={fps} does not divide sample_rate={sample_rate}: each video frame must "
                "carry a whole number of audio samples"
            )
        self._motion = motion
        self._renderer = renderer
        self._width = width
        self._height = height
        self._fps = fps
        self._sample_rate = sample_rate
        self._spf = int(round(samples_per_frame))
        self._channels = tuple(motion.channels)
        self._on_render_error = on_render_error
        self._render_budget_s = render_budget_s
        self._max_render_failures = max(1, max_render_failures)
        self._audio_only_listeners: list[Callable[[str], None]] = (
            [on_audio_only] if on_audio_only is not None else []
        )
        self._consecutive_failures = 0
        self._render_in_flight: asyncio.Future[rtc.VideoFrame] | None = None

        self._inbox: deque[tuple[np.ndarray, int] | AudioSegmentEnd] = deque()
        self._wakeup = asyncio.Event()
        self._segments: deque[_Segment] = deque()
        self._executor = _process_executor("avatar-lipsync")
        self._render_executor = _process_executor("avatar-render")
        self._state = ConversationState.IDLE
        self._frame_index = 0
        self._silence = np.zeros(self._spf, dtype=np.int16)
        self._last_good: rtc.VideoFrame | None = None
        # Frames are written into a ring of preallocated buffers instead of a fresh
        # ~0.8 MB bytes object per frame; a buffer is reused only after every frame that
        # could still be waiting for capture has gone out.
        ring = max(4, math.ceil(max_in_flight_s * fps) + 2)
        self._draw_rgba = getattr(renderer, "render_rgba", None)
        # A renderer may want the next frames' mouth channels too (the footage renderer
        # prefers crops whose own next frames fit them).
        self._look_ahead: Callable[[tuple[str, ...], np.ndarray], None] | None = getattr(renderer, "look_ahead", None)
        self._follows_pitch = bool(getattr(renderer, "follows_pitch", False))
        channels = 4 if self._draw_rgba is not None else 3
        self._buffer_type = rtc.VideoBufferType.RGBA if channels == 4 else rtc.VideoBufferType.RGB24
        self._buffers = [bytearray(width * height * channels) for _ in range(ring)]
        self._views = [
            np.frombuffer(b, dtype=np.uint8).reshape(height, width, channels)
            for b in self._buffers
        ]
        self._next_buffer = 0
        self._last_mouth = dict.fromkeys(self._channels, 0.0)
        self._epoch = 0
        self._closed = False
        self.stats = GeneratorStats()

    # -- VideoGenerator API -------------------------------------------------------------

    @property
    def fps(self) -> float:
        return self._fps

    @property
    def sample_rate(self) -> int:
        return self._sample_rate

    @property
    def speaking(self) -> bool:
        return bool(self._segments)

    @property
    def epoch(self) -> int:
        """Bumped on every :meth:`clear_buffer`; frames from older epochs are stale."""
        return self._epoch

    def set_state(self, state: ConversationState) -> None:
        """Set the non-speaking state (idle, listening, thinking) shown between speech."""
        self._state = state

    @property
    def audio_only(self) -> bool:
        """True once the renderer has been given up on: speech goes on without a face."""
        return self.stats.audio_only

    def add_audio_only_listener(self, listener: Callable[[str], None]) -> None:
        """Call ``listener(why)`` when the generator gives up on the renderer."""
        self._audio_only_listeners.append(listener)

    async def push_audio(self, frame: rtc.AudioFrame | AudioSegmentEnd) -> None:
        """Queue speech. Raises :class:`AudioInputError` (naming the problem) for audio that
        cannot be played; the queue is left as it was."""
        if isinstance(frame, AudioSegmentEnd):
            self._inbox.append(frame)
        else:
            try:
                pcm, rate = frame_to_mono(frame)
            except AudioInputError:
                self.stats.bad_input += 1
                raise
            if pcm.size == 0:
                return
            self._inbox.append((pcm, rate))
        self._wakeup.set()

    def clear_buffer(self) -> None:
        self._epoch += 1
        had_speech = bool(self._segments) or bool(self._inbox)
        self._inbox.clear()
        self._segments.clear()
        if had_speech:
            self.stats.interruptions += 1
        # Each reset runs on its part's (single) worker thread, after any call in flight.
        self._executor.submit(self._motion.reset)
        reset_motion = getattr(self._renderer, "reset_motion", None)
        if callable(reset_motion):
            self._render_executor.submit(reset_motion)

    def __aiter__(self) -> AsyncIterator[rtc.VideoFrame | rtc.AudioFrame | AudioSegmentEnd]:
        return self._stream()

    async def aclose(self) -> None:
        self._closed = True
        self._wakeup.set()
        # The executors are the process's, shared with other sessions: nothing to shut.

    # -- the frame loop -----------------------------------------------------------------

    async def _stream(self) -> AsyncIterator[rtc.VideoFrame | rtc.AudioFrame | AudioSegmentEnd]:
        loop = asyncio.get_running_loop()
        frame_period = 1.0 / self._fps
        while not self._closed:
            await self._drain_inbox(loop)
            segment = self._segments[0] if self._segments else None

            if segment is not None and self._frame_ready(segment):
                epoch = self._epoch
                video, audio = await self._speech_frame(loop, segment)
                if epoch != self._epoch:
                    continue  # interrupted while rendering: drop the stale pair
                if video is not None:
                    yield video
                yield audio
                continue

            if segment is not None and segment.ended and self._segment_done(segment):
                self._segments.popleft()
                self.stats.segments += 1
                yield AudioSegmentEnd()
                continue

            if segment is not None and not segment.ended:
                # Speech has started but the next slice has not arrived yet: wait up to a
                # frame for it before holding the face for one frame of silence.
                self._wakeup.clear()
                try:
                    await asyncio.wait_for(self._wakeup.wait(), frame_period)
                    continue
                except asyncio.TimeoutError:
                    self.stats.underruns += 1

            state = ConversationState.SPEAKING if segment is not None else self._state
            mouth = self._last_mouth if segment is not None else None
            still = await self._still_frame(loop, state, mouth)
            if still is not None:
                yield still
            # Silence that fills a gap inside a reply is marked: it is not the reply's audio.
            yield self._audio_frame(self._silence, filler=segment is not None)

    async def _drain_inbox(self, loop: asyncio.AbstractEventLoop) -> None:
        # TTS audio arrives much faster than real time. Feed it to the model only until
        # the next frame can be made, so a long reply landing at once never stalls the
        # frame clock; one 100 ms chunk per 40 ms frame still keeps input well ahead.
        while self._inbox:
            if self._segments and self._frame_ready(self._segments[0]):
                return
            item = self._inbox.popleft()
            epoch = self._epoch
            if isinstance(item, AudioSegmentEnd):
                segment = self._open_segment()
                tail = await loop.run_in_executor(self._executor, self._flush_segment, segment)
                if epoch == self._epoch:
                    segment.append_audio(tail[0])
                    segment.append_mouth(tail[1])
                    segment.ended = True
                continue
            pcm, rate = item
            # What is already queued goes to the model in one call (up to _BATCH_S): a call
            # per 10-40 ms push costs more and makes the first frame wait for each in turn.
            parts = [pcm]
            total = pcm.size
            while self._inbox and total < _BATCH_S * rate:
                nxt = self._inbox[0]
                if isinstance(nxt, AudioSegmentEnd) or nxt[1] != rate:
                    break
                self._inbox.popleft()
                parts.append(nxt[0])
                total += nxt[0].size
            if len(parts) > 1:
                pcm = np.concatenate(parts)
            segment = self._open_segment()
            out_pcm, mouth = await loop.run_in_executor(
                self._executor, self._feed_segment, segment, pcm, rate
            )
            if epoch == self._epoch:
                segment.append_audio(out_pcm)
                segment.append_mouth(mouth)

    def _open_segment(self) -> _Segment:
        # A segment that already ended stays queued until played; new audio opens another.
        if not self._segments or self._segments[-1].ended:
            self._segments.append(_Segment(len(self._channels)))
        return self._segments[-1]

    # Worker-thread side ------------------------------------------------------------------

    def _feed_segment(
        self, segment: _Segment, pcm: np.ndarray, sample_rate: int
    ) -> tuple[np.ndarray, np.ndarray]:
        try:
            mouth = self._motion.push(pcm, sample_rate)
        except Exception:  # a model failure must not cost the speech
            # The audio still plays, with the mouth at rest for this chunk.
            self.stats.motion_errors += 1
            if self.stats.motion_errors <= 3:
                logger.exception("the mouth model failed on an audio chunk; mouth at rest")
            rows = round(pcm.size / sample_rate * self._motion.fps)
            mouth = np.zeros((rows, len(self._channels)), dtype=np.float32)
        out = np.zeros(0, dtype=np.int16)
        if segment.resampler is not None and segment.rate != sample_rate:
            # The rate changed mid-segment: finish the old stream, start a new one.
            out = self._join_frames(segment.resampler.flush())
            segment.resampler = None
        if sample_rate == self._sample_rate:
            return (np.concatenate([out, pcm]) if out.size else pcm), mouth
        if segment.resampler is None:
            segment.resampler = rtc.AudioResampler(
                sample_rate, self._sample_rate, quality=rtc.AudioResamplerQuality.MEDIUM
            )
            segment.rate = sample_rate
        frames = segment.resampler.push(
            rtc.AudioFrame(pcm.tobytes(), sample_rate, 1, pcm.size)
        )
        resampled = self._join_frames(frames)
        return (np.concatenate([out, resampled]) if out.size else resampled), mouth

    def _flush_segment(self, segment: _Segment) -> tuple[np.ndarray, np.ndarray]:
        try:
            mouth = self._motion.flush()
        except Exception:  # the segment must still end
            self.stats.motion_errors += 1
            logger.exception("the mouth model failed at the end of a segment")
            mouth = np.zeros((0, len(self._channels)), dtype=np.float32)
        self._motion.reset()
        tail = np.zeros(0, dtype=np.int16)
        if segment.resampler is not None:
            tail = self._join_frames(segment.resampler.flush())
        return tail, mouth

    @staticmethod
    def _join_frames(frames: list[rtc.AudioFrame]) -> np.ndarray:
        if not frames:
            return np.zeros(0, dtype=np.int16)
        return np.concatenate([np.frombuffer(f.data, dtype=np.int16) for f in frames])

    # Frame assembly -----------------------------------------------------------------------

    def _frame_ready(self, segment: _Segment) -> bool:
        k = segment.next_frame
        if segment.ended:
            return k * self._spf < segment.audio_len
        have_audio = segment.audio_len >= (k + 1) * self._spf
        # The mouth for frame k is sampled at the frame's centre time.
        centre = (k + 0.5) / self._fps
        have_mouth = len(segment.mouth) > math.ceil(centre * self._motion.fps)
        return have_audio and have_mouth

    def _segment_done(self, segment: _Segment) -> bool:
        return segment.next_frame * self._spf >= segment.audio_len

    def _mouth_at(self, segment: _Segment, t: float) -> dict[str, float]:
        mouth = segment.mouth
        if len(mouth) == 0:
            return dict.fromkeys(self._channels, 0.0)
        pos = min(max(t * self._motion.fps, 0.0), len(mouth) - 1)
        lo = int(pos)
        hi = min(lo + 1, len(mouth) - 1)
        w = pos - lo
        row = mouth[lo] * (1.0 - w) + mouth[hi] * w
        return {name: float(row[i]) for i, name in enumerate(self._channels)}

    async def _speech_frame(
        self, loop: asyncio.AbstractEventLoop, segment: _Segment
    ) -> tuple[rtc.VideoFrame | None, rtc.AudioFrame]:
        k = segment.next_frame
        segment.next_frame += 1
        start = k * self._spf
        chunk = segment.audio[start : min(start + self._spf, segment.audio_len)]
        if chunk.size < self._spf:
            chunk = np.concatenate([chunk, self._silence[: self._spf - chunk.size]])
        else:
            chunk = chunk.copy()  # the segment buffer may grow (reallocate) under us
        mouth = self._mouth_at(segment, (k + 0.5) / self._fps)
        self._last_mouth = mouth
        self.stats.speech_frames += 1
        ahead = self._mouth_ahead(segment, k) if self._look_ahead is not None else None
        video = await self._render(loop, mouth, ConversationState.SPEAKING, _energy(chunk), ahead, chunk)
        return video, self._audio_frame(chunk)

    def _mouth_ahead(self, segment: _Segment, k: int) -> np.ndarray | None:
        """The mouth at the next LOOK_AHEAD_FRAMES frames' centres, as far as it is known."""
        rows = []
        for j in range(1, LOOK_AHEAD_FRAMES + 1):
            pos = (k + 0.5 + j) / self._fps * self._motion.fps
            lo = int(pos)
            if lo + 1 >= len(segment.mouth):
                break
            w = pos - lo
            rows.append(segment.mouth[lo] * (1.0 - w) + segment.mouth[lo + 1] * w)
        return np.array(rows, np.float32) if rows else None

    async def _still_frame(
        self,
        loop: asyncio.AbstractEventLoop,
        state: ConversationState,
        mouth: Mapping[str, float] | None,
    ) -> rtc.VideoFrame | None:
        closed = mouth if mouth is not None else dict.fromkeys(self._channels, 0.0)
        return await self._render(loop, closed, state, 0.0)

    async def _render(
        self,
        loop: asyncio.AbstractEventLoop,
        mouth: Mapping[str, float],
        state: ConversationState,
        energy: float,
        ahead: np.ndarray | None = None,
        audio: np.ndarray | None = None,
    ) -> rtc.VideoFrame | None:
        """The frame for now, or ``None`` once the generator is audio-only."""
        if self.stats.audio_only:
            return None
        t = self._frame_index / self._fps
        self._frame_index += 1
        self.stats.frames += 1
        started = time.perf_counter()
        pending = self._render_in_flight
        if pending is not None and not pending.done():
            # Still drawing an earlier frame (a stall): show the last good frame again
            # rather than queue more work behind it and let the audio wait.
            self.stats.dropped_frames += 1
            return self._last_good or self._black_frame()
        if pending is not None:
            self._render_in_flight = None
            self._take_result(pending)  # a late frame: counts as good (or failed)
            if self.stats.audio_only:
                return None
        future = loop.run_in_executor(
            self._render_executor, self._render_frame, mouth, state, t, energy, ahead, audio
        )
        done, _ = await asyncio.wait({future}, timeout=self._render_budget_s)
        if not done:
            self._render_in_flight = future
            self.stats.dropped_frames += 1
            return self._last_good or self._black_frame()
        frame = self._take_result(future)
        self.stats.render_seconds += time.perf_counter() - started
        if frame is None:
            if self.stats.audio_only:
                return None
            return self._last_good or self._black_frame()
        return frame

    def _take_result(self, future: asyncio.Future[rtc.VideoFrame]) -> rtc.VideoFrame | None:
        """A finished render: the frame (now the last good one), or None if it failed."""
        exc = future.exception()
        if exc is None:
            self._consecutive_failures = 0
            self._last_good = future.result()
            return self._last_good
        self.stats.render_errors += 1
        self._consecutive_failures += 1
        if self.stats.render_errors <= 3 or self.stats.render_errors % 100 == 0:
            logger.error(
                "avatar renderer failed on a frame; repeating the last good one",
                exc_info=(type(exc), exc, exc.__traceback__),
            )
        if self._on_render_error is not None:
            self._on_render_error(exc)
        if self._consecutive_failures >= self._max_render_failures:
            self._give_up_rendering(exc)
        return None

    def _give_up_rendering(self, exc: BaseException) -> None:
        self.stats.audio_only = True
        why = (
            f"the renderer failed on {self._consecutive_failures} frames in a row "
            f"(last: {exc!r}); the avatar goes on with audio only"
        )
        logger.error(why)
        for listener in self._audio_only_listeners:
            listener(why)

    def _render_frame(
        self,
        mouth: Mapping[str, float],
        state: ConversationState,
        t: float,
        energy: float,
        ahead: np.ndarray | None = None,
        audio: np.ndarray | None = None,
    ) -> rtc.VideoFrame:
        # Runs on the worker thread: drawing, the pitch and the copy into the frame ring
        # all stay off the event loop.
        if ahead is not None:
            assert self._look_ahead is not None  # ahead is only read for a renderer that looks ahead
            self._look_ahead(self._channels, ahead)
        if audio is not None and self._follows_pitch:
            mouth = {**mouth, PITCH_KEY: frame_pitch(audio, self._sample_rate)}
        draw = self._draw_rgba or self._renderer.render
        return self._to_video_frame(draw(mouth, state, t, energy))

    def _to_video_frame(self, image: np.ndarray) -> rtc.VideoFrame:
        view = self._views[self._next_buffer]
        if image.shape != view.shape or image.dtype != np.uint8:
            kind = "render_rgba" if self._draw_rgba is not None else "render"
            raise ValueError(
                f"renderer.{kind}() returned {image.shape} {image.dtype}, expected "
                f"{view.shape} uint8"
            )
        i = self._next_buffer
        self._next_buffer = (i + 1) % len(self._buffers)
        np.copyto(view, image)
        return rtc.VideoFrame(self._width, self._height, self._buffer_type, self._buffers[i])

    def _black_frame(self) -> rtc.VideoFrame:
        return rtc.VideoFrame(
            self._width,
            self._height,
            rtc.VideoBufferType.RGB24,
            bytes(self._width * self._height * 3),
        )

    def _audio_frame(self, chunk: np.ndarray, *, filler: bool = False) -> rtc.AudioFrame:
        return rtc.AudioFrame(chunk.tobytes(), self._sample_rate, 1, chunk.size,
                              userdata={FILLER: True} if filler else None)
