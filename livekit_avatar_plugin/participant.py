"""The avatar's side of the room: receive speech, publish synchronised audio and video.

:class:`AvatarPublisher` plays the role of LiveKit's ``AvatarRunner`` with the fixes an
avatar needs in production:

* audio and video are published under one stream name, so browsers lip-sync them;
* both tracks are published before the first word, fed by idle frames, so the agent
  (which waits for the avatar's video track) never stalls;
* a single-layer track (``high``, ``medium``, ``low``) is let out to viewers once WebRTC's
  bandwidth estimate covers its bitrate cap, so the first frame they get is coded at the
  full rate; speech that arrives meanwhile waits for them. In VP8 (the default codec)
  the plugin encodes such a track itself (``vp8_encoder``): WebRTC's VP8 would ramp up
  over the first two seconds;
* audio is the clock: each video frame goes out when its audio slice starts playing, so
  the A/V offset does not depend on which of two queues happened to fill first;
* an interruption clears the queued audio and frames too, not only the generator, so the
  avatar falls silent within a frame or two instead of playing out stale audio;
* ``playback_finished`` is reported exactly once for every segment the agent started,
  interrupted or not, so ``say()`` never hangs waiting for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

from livekit import rtc
from livekit.agents.voice.avatar import (
    AudioReceiver,
    AudioSegmentEnd,
    DataStreamAudioReceiver,
)

from . import _compat
from .audio import opus
from .audio.input import AudioInputError, check_channels, check_rate
from .config import VideoOptions
from .generator import AvatarVideoGenerator
from .metrics import MetricsRecorder
from .state import ConversationState
from .vp8_encoder import VP8EncodedSource

logger = logging.getLogger("livekit_avatar_plugin.participant")

# Both tracks carry this stream name: browsers only lip-sync tracks of one MediaStream.
AVATAR_STREAM_NAME = "avatar"
AUDIO_TRACK_NAME = "avatar_audio"
VIDEO_TRACK_NAME = "avatar_video"
# Audio is the clock. The audio source holds about this much audio ahead of playout:
# enough to ride out a late frame on a busy machine, small enough that an interruption
# (which clears it) falls silent quickly.
_AUDIO_LEAD_S = 0.06
_AUDIO_QUEUE_MS = 400
# WebRTC stamps audio with its capture time about this long after the slice leaves the
# audio source's queue (measured: independent of the queue's lead). Receivers that
# lip-sync (browsers) align audio and video by those stamps, so a frame is captured this
# much after its slice starts, or every browser hears the mouth ~60 ms late.
# benchmarks/browser_av_sync.py measures the result in Chromium.
_AUDIO_STAMP_LATENCY_S = 0.058
# LiveKit's agent -> avatar audio transport (one byte stream per speech segment).
_AUDIO_STREAM_TOPIC = "lk.audio_stream"
# A single-layer track is held back from subscribers until WebRTC's bandwidth estimate
# covers its bitrate cap (see AvatarPublisher._open_when_bandwidth_covers_cap): at most
# this long, checked this often.
_BANDWIDTH_WAIT_MAX_S = 1.0
_BANDWIDTH_POLL_S = 0.05
# The estimate often pauses just under the cap after the first probe (1.8 of 2 Mbps) and
# takes another probe, ~0.4 s, to pass it; 90 % of the cap is near enough.
_BANDWIDTH_ENOUGH = 0.9
# Then, at most this long for the first subscription (nobody may be watching yet).
_SUBSCRIPTION_WAIT_MAX_S = 1.0
# A VP8 or H.264 simulcast viewer of the lowest layer decodes only key frames once the
# avatar's own link to the server loses packets: WebRTC fills what the encoder leaves of
# its budget with padding on that layer's stream, the server cannot tell lost padding
# from lost video, and the layer reaches viewers with holes nobody can fill. The plugin
# can stop neither, so it says so: a warning once the loss the server reports for our
# video stays at or above this fraction for two checks this far apart.
_UPLINK_LOSS_WARN = 0.02
_UPLINK_CHECK_S = 3.0
_PADDING_BLIND_CODECS = ("vp8", "h264")
# A single-layer VP8 track is encoded by the plugin (see vp8_encoder) rather than by
# WebRTC, whose VP8 ramps over a pinned preset's first two seconds. Off: WebRTC's
# encoder, for comparison (benchmarks/video_quality.py).
_ENCODE_VP8_HERE = True


class _AudioClockedPacer:
    """Publishes each video frame exactly when the audio slice it belongs to starts playing.

    LiveKit's ``AVSynchronizer`` keeps separate audio and video queues; which one fills
    first decides a random A/V offset of up to a queue length per session. Here every
    frame pair is timed from the audio source's own queue: push the slice, read how long
    until it plays, and capture the frame at that moment.
    """

    def __init__(
        self,
        audio: rtc.AudioSource,
        video: rtc.VideoSource,
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

    def stage_video(self, frame: rtc.VideoFrame) -> None:
        self._frame = frame

    async def push_audio(self, chunk: rtc.AudioFrame) -> float:
        """Queue one slice (and its staged frame); returns when the slice starts playing."""
        await self._audio.capture_frame(chunk)
        now = time.monotonic()
        if self._play_end < now:
            if self._play_end and self.metrics is not None:
                self.metrics.underrun()
            self._play_end = now
        starts_in = self._play_end - now
        self._play_end += chunk.duration
        frame, self._frame = self._frame, None
        if frame is not None:
            while self._pending and self._pending[0].cancelled():
                self._pending.popleft()
            due = now + starts_in + _AUDIO_STAMP_LATENCY_S + self._video_delay_s
            handle = self._loop.call_later(due - now, self._capture, frame, due)
            self._pending.append(handle)
        if self._on_published is not None:
            self._on_published("audio", now + starts_in + _AUDIO_STAMP_LATENCY_S, chunk)
        # Hold the producer back so the queue stays near its lead.
        excess = (self._play_end - time.monotonic()) - _AUDIO_LEAD_S
        if excess > 0:
            await asyncio.sleep(excess)
        return now + starts_in

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
        self._play_end = 0.0
        while self._pending:
            self._pending.popleft().cancel()
        self._frame = None


def default_video_publish_options(video: VideoOptions) -> rtc.TrackPublishOptions:
    """Publish options for the avatar's video track from its quality settings.

    The bitrate cap is always explicit: without one the encoder starts from a low default
    and drops frames (we saw ~20 fps delivered at 512x512). A pinned preset publishes a
    single layer, so subscribers get the full resolution from the first frame; ``auto``
    publishes simulcast layers (SVC for VP9/AV1) and lets each subscriber ramp up. Under
    CPU pressure we would rather lose resolution than the frame rate lip-sync needs.
    """
    opts = rtc.TrackPublishOptions(
        video_encoding=rtc.VideoEncoding(max_bitrate=video.max_bitrate, max_framerate=video.fps),
        video_codec=getattr(rtc.VideoCodec, video.codec.upper()),
        simulcast=video.simulcast,
    )
    opts.degradation_preference = rtc.DegradationPreference.MAINTAIN_FRAMERATE.value
    return opts


class _CheckedStream:
    """A speech stream as LiveKit's receiver will read it, made safe first.

    The agent waits for every segment's ``playback_finished``, in order, and LiveKit's
    receiver ends (taking the avatar with it) on the first error it meets. So:

    * a stream whose header cannot be played is given a valid header and 10 ms of
      silence in place of its payload (which is drained and discarded): the segment
      still ends and is reported, the error is logged by name;
    * a stream that breaks off mid-way (the connection dropped, the sender vanished)
      simply ends there, with a warning, instead of raising into the receiver.
    """

    def __init__(self, reader: rtc.ByteStreamReader, sample_rate: int, problem: str | None) -> None:
        self._reader = reader
        self.info = reader.info
        if problem is not None:
            attributes = {"sample_rate": str(sample_rate), "num_channels": "1"}
            self.info = dataclasses.replace(reader.info, attributes=attributes)
        self._chunks = self._silence(sample_rate) if problem else self._passthrough()

    async def _passthrough(self) -> AsyncIterator[bytes]:
        decoder: opus.SpeechDecoder | None = None
        first = True
        try:
            async for chunk in self._reader:
                if first:
                    first = False
                    is_opus, chunk = opus.split_magic(chunk)
                    if is_opus:
                        # Our agent side compressed it (see audio/opus.py). Decoding a
                        # chunk takes well under a millisecond: cheaper on the loop than
                        # a thread hop.
                        decoder = opus.SpeechDecoder(int(self.info.attributes["sample_rate"]))
                if decoder is not None:
                    chunk = decoder.decode(chunk)
                if chunk:
                    yield chunk
            if decoder is not None:
                decoder.finish()
        except Exception as exc:  # noqa: BLE001 - an ended segment beats a dead avatar
            logger.warning("a speech stream broke off (%r); the segment ends there", exc)
        finally:
            if decoder is not None:
                decoder.close()

    async def _silence(self, sample_rate: int) -> AsyncIterator[bytes]:
        with contextlib.suppress(Exception):
            async for _ in self._reader:  # drain it, so nothing stays buffered for it
                pass
        yield bytes(2 * (sample_rate // 100))

    def __aiter__(self) -> _CheckedStream:
        return self

    async def __anext__(self) -> bytes:
        return await self._chunks.__anext__()


def speech_stream_problem(attributes: dict[str, str] | None) -> str | None:
    """What makes a speech stream's header unplayable, or None."""
    if not attributes or "sample_rate" not in attributes or "num_channels" not in attributes:
        return "it has no sample_rate/num_channels attributes"
    try:
        check_rate(attributes["sample_rate"])
        check_channels(attributes["num_channels"])
    except AudioInputError as exc:
        return str(exc)
    return None


def guard_audio_streams(room: rtc.Room, sample_rate: int) -> None:
    """Check every incoming speech stream's header before LiveKit's receiver reads it.

    Call after ``DataStreamAudioReceiver.start()``, which registers the handler.
    """
    handler = _compat.byte_stream_handler(room, _AUDIO_STREAM_TOPIC)
    if handler is None:
        return

    def checked(reader: rtc.ByteStreamReader, sender: str) -> None:
        problem = speech_stream_problem(reader.info.attributes)
        if problem is not None:
            logger.error(
                "rejected a speech segment from %s: %s; it is played as silence", sender, problem
            )
        handler(_CheckedStream(reader, sample_rate, problem), sender)

    room.unregister_byte_stream_handler(_AUDIO_STREAM_TOPIC)
    room.register_byte_stream_handler(_AUDIO_STREAM_TOPIC, checked)


class AvatarPublisher:
    """Runs one avatar in one room: receiver -> generator -> synchroniser -> tracks."""

    def __init__(
        self,
        room: rtc.Room,
        *,
        audio_receiver: AudioReceiver,
        generator: AvatarVideoGenerator,
        video: VideoOptions,
        metrics: MetricsRecorder | None = None,
        video_delay_s: float = 0.0,
        on_published: Callable[[str, float, object], None] | None = None,
        on_died: Callable[[str], None] | None = None,
    ) -> None:
        """``on_published(kind, t, frame)`` is called as each audio slice is scheduled to
        play (``t`` = its playout start) and as each video frame is captured; it runs on
        the event loop, so keep it cheap (metrics, test probes)."""
        self._room = room
        self._receiver = audio_receiver
        self._generator = generator
        self._video = video
        self._audio_source = rtc.AudioSource(
            sample_rate=generator.sample_rate, num_channels=1, queue_size_ms=_AUDIO_QUEUE_MS
        )
        self._video_source: rtc.VideoSource | VP8EncodedSource
        self._video_source = self._make_video_source(video)
        self._pacer = _AudioClockedPacer(
            self._audio_source,
            self._video_source,
            video_delay_s=video_delay_s,
            on_published=on_published,
            frame_period_s=1.0 / video.fps,
        )
        self._pacer.metrics = metrics
        self._video_delay_s = video_delay_s
        self._on_died = on_died
        self.metrics = metrics
        self._tasks: set[asyncio.Task[Any]] = set()
        self._main_tasks: list[asyncio.Task[Any]] = []
        self._segment_open = False  # the agent has sent audio for a segment not yet finished
        self._playback_started = False
        self._playback_position = 0.0
        self._tracks_published = False
        self._published = asyncio.Event()  # and open to subscribers
        self._closed = False
        self._bad_input_logged = 0
        generator.add_audio_only_listener(self._went_audio_only)
        self.audio_publication: rtc.LocalTrackPublication | None = None
        self.video_publication: rtc.LocalTrackPublication | None = None
        self._uplink_watch: asyncio.Task[None] | None = None

    def _make_video_source(self, video: VideoOptions) -> rtc.VideoSource | VP8EncodedSource:
        if _ENCODE_VP8_HERE and video.codec == "vp8" and not video.simulcast:
            try:
                source = VP8EncodedSource(video.width, video.height, video.fps, video.max_bitrate)
            except Exception:
                logger.exception("cannot encode VP8 here; WebRTC's encoder will (its first "
                                 "seconds ramp up to the bitrate cap)")  # fmt: skip
            else:
                return source
        return rtc.VideoSource(width=video.width, height=video.height)

    @property
    def generator(self) -> AvatarVideoGenerator:
        return self._generator

    def heard_position(self) -> float:
        """Seconds of the current segment already played out (not merely queued)."""
        if not self._segment_open:
            return 0.0
        return max(0.0, self._playback_position - self._pacer.queued_s())

    async def wait_published(self) -> None:
        """Return once the avatar's audio and video tracks are published (frames flowing)."""
        await self._published.wait()

    def set_state(self, state: ConversationState) -> None:
        """What the face shows between its own speech (listening, thinking, idle)."""
        self._generator.set_state(state)

    async def start(self) -> None:
        await self._receiver.start()
        if isinstance(self._receiver, DataStreamAudioReceiver):
            guard_audio_streams(self._room, self._generator.sample_rate)
        self._receiver.on("clear_buffer", self._on_clear_buffer)
        self._main_tasks = [
            asyncio.create_task(self._read_audio(), name="avatar-read-audio"),
            asyncio.create_task(self._forward_frames(), name="avatar-forward-frames"),
        ]
        for task in self._main_tasks:
            task.add_done_callback(self._task_ended)

    def _task_ended(self, task: asyncio.Task[Any]) -> None:
        # Either loop ending while we are not closing means the avatar has stopped
        # working: it can no longer play what the agent sends.
        if self._closed or self._on_died is None:
            return
        if task.cancelled():
            why = f"{task.get_name()} was stopped"
        elif task.exception() is not None:
            why = f"{task.get_name()} failed: {task.exception()!r}"
        else:
            why = f"{task.get_name()} ended"
        self._on_died(why)

    async def _publish_tracks(self) -> None:
        audio_track = rtc.LocalAudioTrack.create_audio_track(AUDIO_TRACK_NAME, self._audio_source)
        audio_opts = rtc.TrackPublishOptions(
            source=rtc.TrackSource.SOURCE_MICROPHONE, stream=AVATAR_STREAM_NAME
        )
        video_opts = default_video_publish_options(self._video)
        track_source: rtc.VideoSource | rtc.EncodedVideoSource = self._video_source
        if isinstance(self._video_source, VP8EncodedSource):
            track_source = self._video_source.source
            video_opts.video_encoder = rtc.VideoEncoderBackend.ENCODER_BACKEND_PRE_ENCODED
        video_track = rtc.LocalVideoTrack.create_video_track(VIDEO_TRACK_NAME, track_source)
        video_opts.source = rtc.TrackSource.SOURCE_CAMERA
        video_opts.stream = AVATAR_STREAM_NAME
        lp = self._room.local_participant
        hold_back = not video_opts.simulcast
        if hold_back:
            lp.set_track_subscription_permissions(allow_all_participants=False)
        self._tracks_published = True
        self.audio_publication = await lp.publish_track(audio_track, audio_opts)
        self.video_publication = await lp.publish_track(video_track, video_opts)
        if hold_back:
            self._notify(self._open_when_bandwidth_covers_cap(video_opts.video_encoding.max_bitrate))
        else:
            self._open_to_subscribers()
        if video_opts.simulcast and self._video.codec in _PADDING_BLIND_CODECS:
            self._uplink_watch = asyncio.create_task(
                self._warn_on_uplink_loss(), name="avatar-uplink-loss"
            )

    async def _warn_on_uplink_loss(self) -> None:
        lossy_checks = 0
        while not self._closed:
            await asyncio.sleep(_UPLINK_CHECK_S)
            try:
                loss = uplink_video_loss(await self._room.get_rtc_stats())
            except Exception:
                logger.debug("could not read the uplink's loss", exc_info=True)
                continue
            lossy_checks = lossy_checks + 1 if loss >= _UPLINK_LOSS_WARN else 0
            if lossy_checks >= 2:
                logger.warning(
                    "the avatar's link to the LiveKit server is losing %.0f %% of its video "
                    "packets: viewers of the lowest %s simulcast layer will see the face "
                    "freeze (they decode only key frames). Run the avatar nearer the server, "
                    "or publish with video_codec='vp9' or a pinned video_quality.",
                    loss * 100, self._video.codec.upper(),
                )  # fmt: skip
                return

    def _open_to_subscribers(self) -> None:
        self._published.set()
        if self.metrics is not None:
            self.metrics.published(time.monotonic())

    async def _open_when_bandwidth_covers_cap(self, cap_bps: int) -> None:
        """Let subscribers in once the encoder may use the whole bitrate cap.

        LiveKit's SDK starts WebRTC's bandwidth estimate at min(90 % of the cap, 1 Mbps)
        and has no setting to start higher. WebRTC's probes lift the estimate past the
        cap 0.2-0.6 s after the first frame; a subscriber let in before then can be sent a
        key frame and its first second encoded for the start estimate (we measured the
        encoder at 56-78 % of its steady target in some such runs). The frames keep
        flowing meanwhile, so the probes have media to ride on, and the agent's speech
        waits (``_read_audio``) rather than playing to an empty room.
        """
        lp = self._room.local_participant
        started = time.monotonic()
        estimate = 0.0
        try:
            while time.monotonic() - started < _BANDWIDTH_WAIT_MAX_S:
                estimate = bandwidth_estimate(await self._room.get_rtc_stats())
                if estimate >= _BANDWIDTH_ENOUGH * cap_bps:
                    break
                await asyncio.sleep(_BANDWIDTH_POLL_S)
            else:
                logger.info(
                    "bandwidth estimate %.0f kbps after %.1f s, below the %d kbps cap; "
                    "letting subscribers in anyway", estimate / 1000, _BANDWIDTH_WAIT_MAX_S,
                    cap_bps // 1000,
                )  # fmt: skip
        except Exception:
            logger.exception("could not read the bandwidth estimate; letting subscribers in")
        finally:
            if not self._closed:
                lp.set_track_subscription_permissions(allow_all_participants=True)
                logger.debug("tracks open to subscribers after %.2f s", time.monotonic() - started)
        # Opening starts every waiting viewer's subscription at once; speech released
        # before the first is in place loses its first words (seen: a reply's first click).
        assert self.audio_publication is not None  # published before this task started
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(
                self.audio_publication.wait_for_subscription(), _SUBSCRIPTION_WAIT_MAX_S
            )
        if not self._closed:
            self._open_to_subscribers()

    async def _read_audio(self) -> None:
        try:
            async for frame in self._receiver:
                if self._tracks_published and not self._published.is_set():
                    # Speech played before anyone can subscribe would be lost to the user.
                    await self._published.wait()
                try:
                    await self._generator.push_audio(frame)
                except AudioInputError as exc:
                    # One bad chunk is dropped; the segment and the avatar go on.
                    self._bad_input_logged += 1
                    if self._bad_input_logged <= 3 or self._bad_input_logged % 100 == 0:
                        logger.error("dropped unplayable audio from the agent: %s", exc)
                    continue
                if isinstance(frame, rtc.AudioFrame) and frame.samples_per_channel > 0:
                    self._segment_open = True
                    if self.metrics is not None:
                        self.metrics.segment_audio(time.monotonic())
        except Exception:
            logger.exception("avatar audio receiver failed")
            raise

    async def _forward_frames(self) -> None:
        try:
            await self._forward_frames_inner()
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("avatar frame forwarding failed")
            raise

    async def _forward_frames_inner(self) -> None:
        async for item in self._generator:
            if isinstance(item, AudioSegmentEnd):
                self._finish_segment(interrupted=False)
                continue
            if isinstance(item, rtc.VideoFrame):
                if not self._tracks_published:
                    # Publish on the first frame: the track is live the moment it exists.
                    await self._publish_tracks()
                self._pacer.stage_video(item)
                continue
            # Audio: speech slices count toward the playback position; silence fills gaps.
            epoch = self._generator.epoch
            plays_at = await self._pacer.push_audio(item)
            if epoch != self._generator.epoch:
                # An interruption landed while this slice was queued: make sure it is gone.
                self._pacer.clear()
                continue
            if self._segment_open and self._generator.speaking:
                if not self._playback_started:
                    self._playback_started = True
                    self._notify(self._receiver.notify_playback_started())
                    if self.metrics is not None:
                        self.metrics.first_speech_frame(plays_at + self._video_delay_s)
                self._playback_position += item.duration

    def _went_audio_only(self, why: str) -> None:
        """The renderer was given up on: take the face down, keep the voice."""
        publication = self.video_publication
        if publication is None or self._closed:
            return
        self.video_publication = None

        async def unpublish() -> None:
            with contextlib.suppress(Exception):
                await self._room.local_participant.unpublish_track(publication.sid)

        self._notify(unpublish())

    def _finish_segment(self, *, interrupted: bool) -> None:
        if self.metrics is not None and not interrupted:
            self.metrics.segment_ended()
        if not self._segment_open:
            return
        self._segment_open = False
        self._playback_started = False
        position, self._playback_position = self._playback_position, 0.0
        self._notify(
            self._receiver.notify_playback_finished(
                playback_position=position, interrupted=interrupted
            )
        )

    def _on_clear_buffer(self) -> None:
        requested_at = time.monotonic()
        had_speech = self._segment_open
        self._generator.clear_buffer()
        # Drop what is already queued for playout; it would otherwise keep playing for
        # up to the queue's lead after the user barged in.
        self._pacer.clear()
        self._finish_segment(interrupted=True)
        if self.metrics is not None and had_speech:
            # The source emits silence on its next 10 ms tick once its queue is empty.
            self.metrics.interrupted(requested_at, time.monotonic() + 0.01)

    def _notify(self, result: Any) -> None:
        if asyncio.iscoroutine(result):
            task = asyncio.create_task(result)
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def aclose(self, reason: str | None = None) -> None:
        """Stop and release everything; ``reason`` (why the face ends) closes the metrics."""
        if self._closed:
            return
        self._closed = True
        if reason is not None and self.metrics is not None:
            with contextlib.suppress(Exception):
                self.metrics.closed(reason)
        with contextlib.suppress(Exception):
            self._receiver.off("clear_buffer", self._on_clear_buffer)
        # A segment still open when we leave is reported, so the agent never waits on it.
        self._finish_segment(interrupted=True)
        await self._receiver.aclose()
        tasks = [*self._main_tasks, *([self._uplink_watch] if self._uplink_watch else [])]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=1.0)
        await self._generator.aclose()
        self._pacer.clear()
        await self._audio_source.aclose()
        await self._video_source.aclose()


def _publisher_entries(stats: Any, kind: str) -> Iterator[Any]:
    """The ``kind`` entries (e.g. ``"candidate_pair"``) of a room's publishing transport,
    from ``Room.get_rtc_stats()``."""
    return (getattr(e, kind) for e in stats.publisher_stats if e.WhichOneof("stats") == kind)


def uplink_video_loss(stats: Any) -> float:
    """The largest fraction of our video packets the server reported lost in its latest
    receiver report, over the published layers, from ``Room.get_rtc_stats()``."""
    return max(
        (
            e.remote_inbound.fraction_lost
            for e in _publisher_entries(stats, "remote_inbound_rtp")
            if e.stream.kind == "video"
        ),
        default=0.0,
    )


def bandwidth_estimate(stats: Any) -> float:
    """WebRTC's send-side bandwidth estimate for a room's publishing transport, in bps,
    from ``Room.get_rtc_stats()``."""
    return max(
        (
            e.candidate_pair.available_outgoing_bitrate
            for e in _publisher_entries(stats, "candidate_pair")
        ),
        default=0.0,
    )
