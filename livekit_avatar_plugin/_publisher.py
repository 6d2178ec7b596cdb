"""The avatar's side of the room: receive speech, publish synchronised audio and video.

:class:`AvatarPublisher` plays the role of LiveKit's ``AvatarRunner`` with what an avatar
needs in production (docs/benchmarks.md has the measurements behind each):

* audio and video go out under one stream name, so browsers lip-sync them, and both are
  published before the first word, fed by idle frames, so the agent never stalls;
* a single-layer track opens to viewers once WebRTC's bandwidth estimate covers its cap,
  so their first frame is coded at the full rate (VP8 is encoded here: ``vp8_encoder``);
* audio is the clock: each video frame goes out as its audio slice starts playing;
* an interruption clears the queued audio and frames too, so the avatar falls silent at once;
* ``playback_finished`` is reported once for every segment, with what was heard.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from livekit import rtc
from livekit.agents.voice.avatar import (
    AudioReceiver,
    AudioSegmentEnd,
    DataStreamAudioReceiver,
)

from . import _compat
from ._audio.input import AudioInputError
from ._config import VideoOptions
from ._generator import FILLER, AvatarVideoGenerator
from ._incoming_speech import guard_audio_streams
from ._metrics import MetricsRecorder
from ._pacer import AudioClockedPacer
from ._playback_reports import PlaybackReports
from ._rtc_stats import PADDING_BLIND_CODECS, bandwidth_estimate, watch_uplink_loss
from ._state import ConversationState
from ._vp8_encoder import VP8EncodedSource

logger = logging.getLogger("livekit_avatar_plugin.participant")

# Both tracks carry this stream name: browsers only lip-sync tracks of one MediaStream.
AVATAR_STREAM_NAME = "avatar"
AUDIO_TRACK_NAME = "avatar_audio"
VIDEO_TRACK_NAME = "avatar_video"
# Audio the source may hold ahead of playout; the pacer keeps it near its lead.
_AUDIO_QUEUE_MS = 400
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
# A reply in a viewer's first second keeps the idle audio queued ahead of it: on a brand
# new subscription the skipped lead cost the reply's first click (tests/test_video_quality.py).
_NEW_VIEWER_S = 1.0
# A single-layer VP8 track is encoded by the plugin (see vp8_encoder) rather than by
# WebRTC, whose VP8 ramps over a pinned preset's first two seconds. Off: WebRTC's
# encoder, for comparison (benchmarks/video_quality.py).
_ENCODE_VP8_HERE = True


@dataclass(frozen=True)
class Lag:
    """How the avatar keeps up with the agent's speech (read by the agent's side in
    ``participant`` mode, which renders in its process; see ``_handover``)."""

    ready: bool  # published: speech plays as it comes
    begun: int  # speech segments begun since the avatar started
    open: bool  # one is playing (or waiting for more of its audio)
    received_s: float  # seconds of it received from the agent
    heard_s: float  # seconds of it played out
    starving_s: float  # how long it has waited, silent, for audio that has not arrived
    # Of the avatar's video on its way to the server (the same host and link as the agent's),
    # the worst of the server's last three reports.
    uplink_loss: float


def default_video_publish_options(video: VideoOptions) -> rtc.TrackPublishOptions:
    """Publish options for the avatar's video track from its quality settings.

    The bitrate cap is always explicit: without one the encoder starts from a low default
    and drops frames (docs/benchmarks.md). A pinned preset publishes a
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
        speech_sender: str | None = None,
        video_delay_s: float = 0.0,
        on_published: Callable[[str, float, object], None] | None = None,
        on_died: Callable[[str], None] | None = None,
    ) -> None:
        """``on_published(kind, t, frame)`` is called as each audio slice is scheduled to
        play (``t`` = its playout start) and as each video frame is captured; it runs on
        the event loop, so keep it cheap (metrics, test probes)."""
        self._room = room
        self._receiver = audio_receiver
        self._speech_sender = speech_sender
        self._generator = generator
        self._video = video
        self._audio_source = rtc.AudioSource(
            sample_rate=generator.sample_rate, num_channels=1, queue_size_ms=_AUDIO_QUEUE_MS
        )
        self._video_source: rtc.VideoSource | VP8EncodedSource
        self._video_source = self._make_video_source(video)
        self._pacer = AudioClockedPacer(
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
        self._reports = PlaybackReports(self._notify)
        self._main_tasks: list[asyncio.Task[Any]] = []
        self._segment_open = False  # the agent has sent audio for a segment not yet finished
        self._segments_begun = 0
        self.reports_sent = 0  # playback_finished reports handed to the receiver
        #: (position, interrupted) of the last few reports, the last being report ``reports_sent``
        self.recent_reports: deque[tuple[float, bool]] = deque(maxlen=8)
        self.on_report: Callable[[], None] | None = None  # called as each report goes out
        self._received_s = 0.0  # of the open segment
        self._starving_s = 0.0  # silence made inside the open segment since its last speech
        self._reading_segment = False  # audio read since the last segment end
        self._drop_segments = 0  # handed to the agent: their audio, still on its way, is discarded
        self.last_given_up: tuple[int, float] | None = None  # (mark, seconds heard), see give_up
        #: a given-up segment's report waits this long, so that what announces the
        #: give-up by a lossy path leaves first (a reliable message lost on a lossy link
        #: holds up everything sent after it: see _dispatch.heartbeat)
        self.give_up_report_delay_s = 0.0
        self._playback_started = False
        self._playback_position = 0.0
        self._tracks_published = False
        self._published = asyncio.Event()  # and open to subscribers
        self._opened_at = math.inf  # when subscribers were let in
        self._closed = False
        self._bad_input_logged = 0
        generator.add_audio_only_listener(self._went_audio_only)
        self.audio_publication: rtc.LocalTrackPublication | None = None
        self.video_publication: rtc.LocalTrackPublication | None = None
        self._uplink_watch: asyncio.Task[None] | None = None
        self._uplink_losses: deque[float] = deque(maxlen=3)  # of our video, the server's last reports

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

    def lag(self) -> Lag:
        self._watch_uplink()
        return Lag(
            ready=self._published.is_set(),
            begun=self._segments_begun,
            open=self._segment_open,
            received_s=self._received_s,
            heard_s=self.heard_position(),
            starving_s=self._starving_s,
            uplink_loss=max(self._uplink_losses, default=0.0),
        )

    def give_up(self, mark: int) -> float | None:
        """Give up the segment that began after ``mark`` others (``Lag.begun`` when the
        agent sent it), if it is playing or has not begun: see :meth:`abandon`. Returns
        the seconds heard (again, if it was given up already), or ``None`` if it has
        finished (its report is on the way) or is not the agent's last."""
        if self.last_given_up is not None and self.last_given_up[0] == mark:
            return self.last_given_up[1]
        if (self._segments_begun == mark + 1 and self._segment_open) or (
            self._segments_begun == mark and not self._segment_open
        ):
            self.last_given_up = (mark, self.abandon())
            return self.last_given_up[1]
        return None

    @property
    def awaiting_audio(self) -> bool:
        """The open segment's stream has not ended: the agent has more of it to send."""
        return self._segment_open and self._reading_segment

    def abandon(self) -> float:
        """Give the open segment (with none open, the next one) up to the agent's own voice,
        which says the rest: it is reported interrupted where it was heard, its audio still
        on the way is discarded, and the face idles. Returns the seconds heard."""
        if self._segment_open:
            heard = self.heard_position()
            self._drop_segments += self._reading_segment
            self._generator.clear_buffer()
            self._finish_segment(interrupted=True, given_up=True)
            self._pacer.clear()
        else:
            heard = 0.0
            self._drop_segments += 1
            # Counted as begun (and finished): the agent marks its next segment by this
            # count, which must not name the one given up.
            self._segments_begun += 1
            self._report_finished(0.0, interrupted=True, given_up=True)
        logger.warning("speech from the agent fell behind; the agent says the rest (%.2f s heard here)", heard)
        return heard

    async def wait_published(self) -> None:
        """Return once the avatar's audio and video tracks are published (frames flowing)."""
        await self._published.wait()

    def set_state(self, state: ConversationState) -> None:
        """What the face shows between its own speech (listening, thinking, idle)."""
        self._generator.set_state(state)

    async def start(self) -> None:
        await self._receiver.start()
        if isinstance(self._receiver, DataStreamAudioReceiver):
            guard_audio_streams(self._room, self._generator.sample_rate, self._speech_sender)
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
        track_source: rtc.VideoSource | rtc.EncodedVideoSource
        if isinstance(self._video_source, VP8EncodedSource):
            track_source = self._video_source.source
            video_opts.video_encoder = rtc.VideoEncoderBackend.ENCODER_BACKEND_PRE_ENCODED
        else:
            track_source = self._video_source
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
        if video_opts.simulcast and self._video.codec in PADDING_BLIND_CODECS:
            self._watch_uplink()

    def _watch_uplink(self) -> None:
        """Read our video's loss from the server's reports (one task, started by whoever
        needs it: a padding-blind simulcast's warning, or the first ``lag()``)."""
        if self._uplink_watch is not None or self._closed:
            return
        padding_blind = self._video.simulcast and self._video.codec in PADDING_BLIND_CODECS
        self._uplink_watch = asyncio.create_task(
            watch_uplink_loss(
                self._room, self._uplink_losses.append, warn_codec=self._video.codec if padding_blind else None
            ),
            name="avatar-uplink-loss",
        )

    def _open_to_subscribers(self) -> None:
        self._opened_at = time.monotonic()
        self._published.set()
        if self.metrics is not None:
            self.metrics.published(time.monotonic())

    async def _open_when_bandwidth_covers_cap(self, cap_bps: int) -> None:
        """Let subscribers in once the encoder may use the whole bitrate cap.

        LiveKit's SDK starts WebRTC's bandwidth estimate at min(90 % of the cap, 1 Mbps)
        and has no setting to start higher. WebRTC's probes lift the estimate past the
        cap 0.2-0.6 s after the first frame; a subscriber let in before then can be sent a
        key frame and its first second encoded for the start estimate (docs/benchmarks.md).
        The frames keep
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
        # before the first is in place loses its first words.
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
                if self._drop_segments:  # handed to the agent: not played here
                    if isinstance(frame, AudioSegmentEnd):
                        self._drop_segments -= 1
                        self._reading_segment = False
                    continue
                self._reading_segment = not isinstance(frame, AudioSegmentEnd)
                try:
                    await self._generator.push_audio(frame)
                except AudioInputError as exc:
                    # One bad chunk is dropped; the segment and the avatar go on.
                    self._bad_input_logged += 1
                    if self._bad_input_logged <= 3 or self._bad_input_logged % 100 == 0:
                        logger.error("dropped unplayable audio from the agent: %s", exc)
                    continue
                if isinstance(frame, rtc.AudioFrame) and frame.samples_per_channel > 0:
                    if not self._segment_open:
                        self._pacer.wake()  # the reply's first frame is made now, not after the idle pacing
                        self._segments_begun += 1
                        self._received_s = 0.0
                        self._starving_s = 0.0
                    self._segment_open = True
                    self._received_s += frame.duration
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
            speech = self._segment_open and self._generator.speaking and not item.userdata.get(FILLER)
            if speech and not self._playback_started and time.monotonic() - self._opened_at > _NEW_VIEWER_S:
                self._pacer.skip_idle()  # the reply starts now, not behind the idle queue
            if speech:
                self._starving_s = 0.0
            elif self._segment_open and item.userdata.get(FILLER):
                self._starving_s += item.duration
            plays_at = await self._pacer.push_audio(item, speech=speech)
            if epoch != self._generator.epoch:
                # An interruption landed while this slice was queued: make sure it is gone.
                self._pacer.clear()
                continue
            if speech:
                if not self._playback_started:
                    self._playback_started = True
                    self._reports.at(plays_at, self._receiver.notify_playback_started)
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

    def _finish_segment(self, *, interrupted: bool, given_up: bool = False) -> None:
        if self.metrics is not None and not interrupted:
            self.metrics.segment_ended()
        if not self._segment_open:
            return
        # An interrupted segment was heard up to what had played; queued audio is dropped.
        position = max(0.0, self._playback_position - (self._pacer.queued_s() if interrupted else 0.0))
        self._segment_open = False
        self._playback_started = False
        self._playback_position = 0.0
        self._starving_s = 0.0
        self._report_finished(position, interrupted=interrupted, given_up=given_up)

    def _report_finished(self, position: float, *, interrupted: bool, given_up: bool = False) -> None:
        def report() -> Any:
            self.reports_sent += 1
            self.recent_reports.append((position, interrupted))
            if self.on_report is not None:
                self.on_report()
            return self._receiver.notify_playback_finished(playback_position=position, interrupted=interrupted)

        if given_up and self.give_up_report_delay_s > 0:
            self._reports.at(time.monotonic() + self.give_up_report_delay_s, report)
        elif interrupted:
            self._reports.now(report)
        else:  # when its last audio has played, as LiveKit's own audio output reports it
            self._reports.at(time.monotonic() + self._pacer.queued_s(), report)

    def _on_clear_buffer(self) -> None:
        requested_at = time.monotonic()
        had_speech = self._segment_open
        self._generator.clear_buffer()
        self._finish_segment(interrupted=True)
        # Drop what is already queued for playout; it would otherwise keep playing for
        # up to the queue's lead after the user barged in.
        self._pacer.clear()
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
        # A segment still open when we leave is reported, so the agent never waits on it;
        # reports waiting for their audio to play go now.
        self._finish_segment(interrupted=True)
        self._reports.flush()
        await self._receiver.aclose()
        if isinstance(self._receiver, DataStreamAudioReceiver):
            _compat.forget_rpc_handlers(self._receiver)
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
