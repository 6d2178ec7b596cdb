"""End-to-end A/V measurement against a real LiveKit server (test instrumentation).

A scripted agent (``fakes.ScriptedLLM`` + ``fakes.SignalTTS``) speaks through an
``AvatarSession`` driven by the test-pattern pipeline. A separate subscriber joins the
room as a user and timestamps every audio and video frame it receives from the avatar.
From those arrivals we measure what a viewer gets: frame rate, A/V offset (click in the
audio vs flash in the video), playback events, interruption-to-silence and the time from
the first TTS byte to the first synced frame.

Used by ``tests/test_e2e_avsync.py`` (assertions) and ``benchmarks/av_sync.py`` (figures).
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import itertools
import json
import statistics
import time
import uuid
from dataclasses import dataclass, field
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
from livekit import api, rtc
from livekit.agents import Agent, AgentSession
from livekit.agents.voice import room_io

from livekit_avatar_plugin import AvatarSession, VideoOptions
from livekit_avatar_plugin.local_server import ServerInfo

from .fakes import SAMPLE_RATE, ScriptedLLM, SignalTTS, click_times
from .pattern_pipeline import FLASH_LEVEL, IDLE_LEVEL, SPEAKING_LEVEL, TestPatternPipeline

FLASH_THRESHOLD = (FLASH_LEVEL + SPEAKING_LEVEL) / 2
SPEECH_THRESHOLD = (SPEAKING_LEVEL + IDLE_LEVEL) / 2
CLICK_THRESHOLD = 0.25 * 32768


def make_token(
    info: ServerInfo, room: str, identity: str, *, agent: bool = False, **grants: Any
) -> str:
    token = (
        api.AccessToken(info.api_key, info.api_secret)
        .with_identity(identity)
        .with_grants(api.VideoGrants(room_join=True, room=room, **grants))
    )
    if agent:
        token = token.with_kind("agent")
    return token.to_jwt()


@dataclass
class SenderLog:
    """What the avatar published, from the session's publish tap."""

    audio: list[tuple[float, int]] = field(default_factory=list)  # (playout start, peak)
    video: list[tuple[float, float]] = field(default_factory=list)  # (capture, mean level)

    def tap(self, kind: str, t: float, frame: Any) -> None:
        if kind == "audio":
            pcm = np.frombuffer(frame.data, dtype=np.int16)
            self.audio.append((t, int(np.abs(pcm.astype(np.int32)).max()) if pcm.size else 0))
        else:
            self.video.append((t, float(np.frombuffer(frame.data, dtype=np.uint8)[::997].mean())))


def sender_offsets(log: SenderLog, *, after: float, before: float) -> list[float]:
    """Click slice playout start vs flash frame capture at the sender (s)."""
    clicks = [t for t, peak in log.audio if peak > CLICK_THRESHOLD and after <= t <= before]
    flashes = []
    previous = False
    for t, level in log.video:
        bright = level > FLASH_THRESHOLD
        if bright and not previous and after <= t <= before + 0.5:
            flashes.append(t)
        previous = bright
    offsets = []
    for tc in clicks:
        if flashes:
            tv = min(flashes, key=lambda v: abs(v - tc))
            if abs(tc - tv) < 0.2:
                offsets.append(tc - tv)
    return offsets


@dataclass
class Capture:
    audio: list[tuple[float, np.ndarray]] = field(default_factory=list)
    video: list[tuple[float, float]] = field(default_factory=list)  # (arrival, mean luma)
    video_size: tuple[int, int] | None = None


class Subscriber:
    """A viewer: joins the room and timestamps the avatar's media as it arrives."""

    def __init__(self, info: ServerInfo, room_name: str, avatar_identity: str) -> None:
        self._info = info
        self._room_name = room_name
        self._avatar_identity = avatar_identity
        self.room = rtc.Room()
        self.capture = Capture()
        self.audio_track = asyncio.Event()
        self.video_track = asyncio.Event()
        self.video_publication: rtc.RemoteTrackPublication | None = None
        self._tasks: list[asyncio.Task[Any]] = []

    async def connect(self) -> None:
        self.room.on("track_subscribed", self._on_track)
        token = make_token(self._info, self._room_name, f"viewer-{uuid.uuid4().hex[:6]}")
        await self.room.connect(self._info.url, token)

    def _on_track(
        self,
        track: rtc.Track,
        publication: rtc.RemoteTrackPublication,
        participant: rtc.RemoteParticipant,
    ) -> None:
        if participant.identity != self._avatar_identity:
            return
        if track.kind == rtc.TrackKind.KIND_AUDIO:
            self._tasks.append(asyncio.create_task(self._read_audio(track)))
            self.audio_track.set()
        elif track.kind == rtc.TrackKind.KIND_VIDEO:
            self.video_publication = publication
            self._tasks.append(asyncio.create_task(self._read_video(track)))
            self.video_track.set()

    async def _read_audio(self, track: rtc.Track) -> None:
        stream = rtc.AudioStream(track, sample_rate=SAMPLE_RATE, num_channels=1)
        async for ev in stream:
            now = time.monotonic()
            self.capture.audio.append(
                (now, np.frombuffer(ev.frame.data, dtype=np.int16).copy())
            )

    async def _read_video(self, track: rtc.Track) -> None:
        stream = rtc.VideoStream(track)
        async for ev in stream:
            now = time.monotonic()
            frame = ev.frame
            w, h = frame.width, frame.height
            self.capture.video_size = (w, h)
            if frame.type != rtc.VideoBufferType.I420:
                frame = frame.convert(rtc.VideoBufferType.I420)
            luma = np.frombuffer(frame.data, dtype=np.uint8, count=w * h)
            self.capture.video.append((now, float(luma[::61].mean())))

    async def audio_jitter_buffer_ms(self) -> float | None:
        """Mean delay of the received audio in this subscriber's jitter buffer (WebRTC stats)."""
        stats = await self.room.get_rtc_stats()
        # With a single peer connection the inbound streams are listed under the publisher.
        for entry in [*stats.subscriber_stats, *stats.publisher_stats]:
            if entry.WhichOneof("stats") != "inbound_rtp":
                continue
            rtp = entry.inbound_rtp
            if rtp.stream.kind == "audio" and rtp.inbound.jitter_buffer_emitted_count:
                return 1000.0 * rtp.inbound.jitter_buffer_delay / rtp.inbound.jitter_buffer_emitted_count
        return None

    def ask_for_lowest_layer(self) -> None:
        """Subscribe to the avatar's lowest simulcast layer, as a small video element does."""
        assert self.video_publication is not None, "no video track subscribed yet"
        self.video_publication.set_video_quality(rtc.VideoQuality.VIDEO_QUALITY_LOW)

    async def udp_ports(self) -> set[int]:
        """The local UDP ports this viewer's media flow through (its selected ICE pairs)."""
        stats = await self.room.get_rtc_stats()
        entries = [*stats.publisher_stats, *stats.subscriber_stats]
        ports = {
            e.local_candidate.rtc.id: e.local_candidate.candidate.port
            for e in entries
            if e.WhichOneof("stats") == "local_candidate"
        }
        return {
            ports[e.candidate_pair.candidate_pair.local_candidate_id]
            for e in entries
            if e.WhichOneof("stats") == "candidate_pair" and e.candidate_pair.candidate_pair.nominated
        }

    async def aclose(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.room.disconnect()


async def track_streams(info: ServerInfo, room: str, identity: str) -> dict[str, str]:
    """Track name -> stream name of a participant's published tracks, from the server."""
    async with api.LiveKitAPI(info.http_url, info.api_key, info.api_secret) as lkapi:
        resp = await lkapi.room.get_participant(
            api.RoomParticipantIdentity(room=room, identity=identity)
        )
    return {t.name: t.stream for t in resp.tracks}


# -- analysis ------------------------------------------------------------------------------


def audio_onsets(capture: Capture, *, after: float, before: float) -> list[float]:
    """Arrival times of click onsets (first loud sample after >= 60 ms of quiet)."""
    return click_onsets(capture.audio, after=after, before=before)


def click_onsets(
    frames: list[tuple[float, np.ndarray]],
    *,
    after: float = float("-inf"),
    before: float = float("inf"),
) -> list[float]:
    """Arrival times of click onsets in ``(arrival, pcm)`` frames of a 24 kHz stream,
    from the frames that arrived in ``[after, before]``.

    The 60 ms of quiet are counted in the stream, not by arrival: a reader held up 0.2 s
    gets the frames in between in one burst, and two clicks would arrive within 60 ms of
    each other."""
    quiet = 0.06 * SAMPLE_RATE
    onsets: list[float] = []
    last_loud, position = float("-inf"), 0
    for arrival, pcm in frames:
        if after <= arrival <= before:
            for idx in np.flatnonzero(np.abs(pcm.astype(np.int32)) > CLICK_THRESHOLD):
                if position + idx - last_loud > quiet:
                    onsets.append(arrival + idx / SAMPLE_RATE)
                last_loud = position + idx
        position += len(pcm)
    return onsets


def flash_onsets(capture: Capture, *, after: float, before: float) -> list[float]:
    onsets: list[float] = []
    previous = False
    for arrival, luma in capture.video:
        bright = luma > FLASH_THRESHOLD
        if bright and not previous and after <= arrival <= before:
            onsets.append(arrival)
        previous = bright
    return onsets


def pair_offsets(audio: list[float], video: list[float], *, fps: float) -> list[float]:
    """Audio-minus-video offsets (s); positive means the sound comes after the picture.

    A click sits at the centre of its frame slot, so the flash frame is compared at
    its own centre: arrival + half a frame period.
    """
    offsets = []
    half = 0.5 / fps
    for ta in audio:
        if not video:
            break
        tv = min(video, key=lambda v: abs(ta - (v + half)))
        d = ta - (tv + half)
        if abs(d) < 0.2:
            offsets.append(d)
    return offsets


def delivered_fps(capture: Capture, *, after: float, before: float) -> float:
    times = [t for t, _ in capture.video if after <= t <= before]
    if len(times) < 2:
        return 0.0
    return (len(times) - 1) / (times[-1] - times[0])


def longest_video_gap(capture: Capture, *, after: float, before: float) -> float:
    """The longest wait between two received frames in ``[after, before]`` (a freeze),
    the window's own edges included, so a stream that stops counts too."""
    times = [after, *(t for t, _ in capture.video if after <= t <= before), before]
    return max(b - a for a, b in itertools.pairwise(times))


def worst_second_frames(capture: Capture, *, after: float, before: float) -> int:
    """The fewest frames received in any one-second window inside ``[after, before]``:
    the rate a viewer sees at the worst moment, which an average over the whole window
    hides."""
    times = [t for t, _ in capture.video if after <= t <= before]
    # A window's count only changes where a frame enters or leaves it, so checking the
    # windows that start at ``after`` or just after a frame covers them all.
    if before - after < 1.0:
        return len(times)
    starts = [after, *(t for t in times if t + 1.0 <= before)]
    return min(bisect.bisect_right(times, s + 1.0) - bisect.bisect_right(times, s) for s in starts)


def silence_after(capture: Capture, t0: float, *, rms_threshold: float = 1000.0) -> float | None:
    """Seconds from ``t0`` until the received audio stays quiet."""
    last_loud_end = None
    for arrival, pcm in capture.audio:
        if arrival < t0:
            continue
        rms = float(np.sqrt(np.mean(pcm.astype(np.float64) ** 2))) if pcm.size else 0.0
        if rms > rms_threshold:
            last_loud_end = arrival
    if last_loud_end is None:
        return 0.0
    return last_loud_end - t0


def first_video_after(capture: Capture, after: float, bright: bool, level: float) -> float | None:
    """Arrival of the first frame after ``after`` whose luma is above (or below) ``level``."""
    for arrival, luma in capture.video:
        if arrival >= after and (luma > level) == bright:
            return arrival
    return None


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


# -- the scenario --------------------------------------------------------------------------


@dataclass
class AVResult:
    mode: str
    fps_configured: float
    delivered_fps: float
    offsets_ms: list[float]
    clicks_sent: int
    playback_events: list[tuple[bool, float]]
    interruption_to_silence_ms: float | None
    interruption_to_still_video_ms: float | None
    first_tts_byte_to_first_frame_ms: float | None
    video_size: tuple[int, int] | None
    same_stream: bool
    idle_frames_before_speech: int
    sender_offsets_ms: list[float] = field(default_factory=list)
    video_delay_ms: float = 0.0
    receiver_audio_buffer_ms: float | None = None
    metrics: list[Any] = field(default_factory=list)
    capture: Capture = field(repr=False, default_factory=Capture)
    marks: dict[str, float] = field(default_factory=dict)

    @property
    def median_offset_ms(self) -> float:
        return _median(self.offsets_ms)

    @property
    def p95_abs_offset_ms(self) -> float:
        return percentile([abs(o) for o in self.offsets_ms], 95)

    @property
    def sender_median_offset_ms(self) -> float:
        return _median(self.sender_offsets_ms)

    @property
    def sender_p95_abs_offset_ms(self) -> float:
        return percentile([abs(o) for o in self.sender_offsets_ms], 95)

    def report(self) -> str:
        lines = [
            f"mode                               {self.mode}",
            f"video                              {self.video_size} @ {self.fps_configured:g} fps configured",
            f"delivered frame rate               {self.delivered_fps:.2f} fps",
            f"video_delay_ms                     {self.video_delay_ms:g}",
            f"A/V offset at the sender           median {self.sender_median_offset_ms:+.1f} ms, "
            f"p95 |offset| {self.sender_p95_abs_offset_ms:.1f} ms over {len(self.sender_offsets_ms)} clicks",
            f"A/V offset at the SDK subscriber   median {self.median_offset_ms:+.1f} ms, "
            f"p95 |offset| {self.p95_abs_offset_ms:.1f} ms over {len(self.offsets_ms)}/{self.clicks_sent} clicks"
            "  (audio - video; no receiver-side A/V sync)",
            f"playback_finished events           {[(i, round(p, 2)) for i, p in self.playback_events]}",
            f"interruption -> audio silent       {self.interruption_to_silence_ms:.0f} ms"
            if self.interruption_to_silence_ms is not None
            else "interruption -> audio silent       n/a",
            f"receiver audio jitter buffer      {self.receiver_audio_buffer_ms:.0f} ms (mean, WebRTC stats)"
            if self.receiver_audio_buffer_ms is not None
            else "receiver audio jitter buffer      n/a",
            f"interruption -> mouth still        {self.interruption_to_still_video_ms:.0f} ms"
            if self.interruption_to_still_video_ms is not None
            else "interruption -> mouth still        n/a",
            f"first TTS byte -> first synced frame {self.first_tts_byte_to_first_frame_ms:.0f} ms"
            if self.first_tts_byte_to_first_frame_ms is not None
            else "first TTS byte -> first synced frame n/a",
            f"audio+video in one stream          {self.same_stream}",
            "avatar metrics events              "
            + ", ".join(
                f"{m.event}:"
                + ",".join(
                    f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}"
                    for k, v in m.model_dump().items()
                    if v is not None
                    and k not in ("type", "timestamp", "metadata", "event", "playback_latency")
                )
                for m in self.metrics
            ),
        ]
        return "\n".join(lines)


async def run_av_scenario(
    info: ServerInfo,
    *,
    mode: str = "participant",
    fps: float = 25.0,
    size: tuple[int, int] = (512, 512),
    click_seconds: tuple[float, float] = (4.0, 3.0),
    video_delay_ms: float = 0.0,
    quality: str = "auto",
) -> AVResult:
    """``quality`` other than ``auto`` publishes one layer (VP8 encoded by the plugin)."""
    room_name = f"av-{uuid.uuid4().hex[:8]}"
    agent_room = rtc.Room()
    await agent_room.connect(
        info.url, make_token(info, room_name, f"agent-{uuid.uuid4().hex[:6]}", agent=True)
    )
    tts = SignalTTS()
    session = AgentSession(
        llm=ScriptedLLM([f"clicks {click_seconds[0]}"]),
        tts=tts,
        turn_handling={"interruption": {"resume_false_interruption": False}},
    )
    avatar = AvatarSession(
        face_pipeline=TestPatternPipeline(),
        livekit_url=info.url,
        api_key=info.api_key,
        api_secret=info.api_secret,
        video=VideoOptions(quality=quality, width=size[0], height=size[1], fps=fps),
        mode=mode,
        video_delay_ms=video_delay_ms,
        first_message={"enabled": False},  # the scenario scripts every line itself
    )
    sender = SenderLog()
    avatar._publish_taps.append(sender.tap)
    metrics: list[Any] = []
    session.on(
        "metrics_collected",
        lambda ev: metrics.append(ev.metrics)
        if type(ev.metrics).__name__ == "LocalAvatarMetrics"
        else None,
    )
    viewer: Subscriber | None = None
    events: list[tuple[bool, float]] = []
    try:
        await avatar.start(session, room=agent_room)
        viewer = Subscriber(info, room_name, avatar.avatar_identity)
        await viewer.connect()
        await session.start(
            Agent(instructions="test"),
            room=agent_room,
            room_options=room_io.RoomOptions(
                audio_input=False, text_input=False, close_on_disconnect=False
            ),
        )
        assert session.output.audio is not None
        session.output.audio.on(
            "playback_finished", lambda ev: events.append((ev.interrupted, ev.playback_position))
        )
        await asyncio.wait_for(viewer.video_track.wait(), 15)
        await asyncio.wait_for(viewer.audio_track.wait(), 15)
        # Wait until the viewer decodes video (its first keyframe), then idle a moment.
        deadline = time.monotonic() + 15
        while not viewer.capture.video and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        await asyncio.sleep(1.0)
        idle_before = len(sender.video)
        streams = await track_streams(info, room_name, avatar.avatar_identity)

        t_speech = time.monotonic()
        await session.generate_reply(user_input="hello").wait_for_playout()
        await session.say(f"clicks {click_seconds[1]}").wait_for_playout()
        t_speech_end = time.monotonic()
        receiver_buffer = await viewer.audio_jitter_buffer_ms()
        await asyncio.sleep(0.5)

        handle = session.say("tone 6")
        # Interrupt once the tone has been audible at the viewer for a while.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if viewer.capture.audio and time.monotonic() - t_speech_end > 2.0:
                recent = viewer.capture.audio[-1][1]
                if recent.size and np.abs(recent).max() > 3000:
                    break
            await asyncio.sleep(0.02)
        await asyncio.sleep(1.0)
        t_interrupt = time.monotonic()
        handle.interrupt()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(handle.wait_for_playout(), 5)
        await asyncio.sleep(1.5)
    finally:
        with contextlib.suppress(Exception):
            await session.aclose()
        with contextlib.suppress(Exception):
            await avatar.aclose()
        if viewer is not None:
            await viewer.aclose()
        await agent_room.disconnect()

    cap = viewer.capture
    audio = audio_onsets(cap, after=t_speech, before=t_speech_end + 0.5)
    video = flash_onsets(cap, after=t_speech, before=t_speech_end + 0.5)
    offsets = [o * 1000 for o in pair_offsets(audio, video, fps=fps)]
    sent = sum(len(click_times(s)) for s in click_seconds)
    first_byte = tts.history.records[0].first_byte_at if tts.history.records else None
    first_frame = (
        first_video_after(cap, first_byte, True, SPEECH_THRESHOLD) if first_byte else None
    )
    silent = silence_after(cap, t_interrupt)
    still = first_video_after(cap, t_interrupt, False, SPEECH_THRESHOLD)
    return AVResult(
        mode=mode,
        fps_configured=fps,
        delivered_fps=delivered_fps(cap, after=t_speech + 0.5, before=t_speech_end),
        offsets_ms=offsets,
        clicks_sent=sent,
        playback_events=events,
        interruption_to_silence_ms=None if silent is None else silent * 1000,
        interruption_to_still_video_ms=None if still is None else (still - t_interrupt) * 1000,
        first_tts_byte_to_first_frame_ms=(
            None if first_frame is None or first_byte is None else (first_frame - first_byte) * 1000
        ),
        video_size=cap.video_size,
        same_stream=len(streams) == 2 and len(set(streams.values())) == 1 and "" not in streams.values(),
        idle_frames_before_speech=idle_before,
        sender_offsets_ms=[
            o * 1000 for o in sender_offsets(sender, after=t_speech, before=t_speech_end)
        ],
        video_delay_ms=video_delay_ms,
        receiver_audio_buffer_ms=receiver_buffer,
        metrics=metrics,
        capture=cap,
        marks={
            "speech": t_speech,
            "speech_end": t_speech_end,
            "interrupt": t_interrupt,
            "first_tts_byte": first_byte or float("nan"),
        },
    )


@contextlib.asynccontextmanager
async def speech_sender_and_avatar_room(
    info: ServerInfo, prefix: str
) -> AsyncIterator[tuple[rtc.Room, rtc.Room, list[dict]]]:
    """A room with an agent-like ``sender`` that takes the avatar's playback reports (the
    ``lk.playback_finished`` payloads, in order, in the list) and an ``avatar-rx`` room for
    an avatar's receiving side; both disconnected after."""
    room_name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    sender, avatar_room = rtc.Room(), rtc.Room()
    finished: list[dict] = []
    try:
        await sender.connect(info.url, make_token(info, room_name, "sender", agent=True))
        await avatar_room.connect(info.url, make_token(info, room_name, "avatar-rx"))
        sender.local_participant.register_rpc_method(
            "lk.playback_finished", lambda data: finished.append(json.loads(data.payload)) or "ok"
        )
        sender.local_participant.register_rpc_method("lk.playback_started", lambda data: "ok")
        yield sender, avatar_room, finished
    finally:
        await avatar_room.disconnect()
        await sender.disconnect()
