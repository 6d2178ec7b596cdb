"""What a subscriber receives in a session's first seconds: resolution, bitrate, codec.

The viewer is in the room before the agent and its avatar arrive, as a user is when a
worker is dispatched to their room, so it sees the avatar's video from its first frame.
Times are taken from that first decoded frame; alongside what the viewer receives, the
probe reads the avatar's own publisher: WebRTC's bandwidth estimate and the encoder's
target bitrate.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass, field

from livekit import rtc

from livekit_avatar_plugin.local_server import ServerInfo
from livekit_avatar_plugin._rtc_stats import bandwidth_estimate

from .av_harness import make_token
from .pattern_pipeline import TexturedPipeline
from .rooms import agent_with_avatar, shut_down


@dataclass
class QualitySample:
    t: float  # seconds since the viewer decoded its first frame of the avatar
    width: int
    height: int
    received_bytes: int  # in all, the first frame's key frame included
    target_kbps: float  # the avatar's encoder target (all layers)


@dataclass
class QualityProbe:
    quality: str
    cap_kbps: float = 0.0
    codec_mime: str = ""
    simulcast: bool = False  # the publication offers several layers
    first_frame_size: tuple[int, int] | None = None
    published_to_first_frame_s: float = 0.0
    estimate_at_subscribe_kbps: float = 0.0  # the avatar's, read as the viewer got the track
    first_frame_bytes: int = 0  # received by the first frame: its key frame
    frame_times: list[float] = field(default_factory=list)  # decoded frames, t as above
    samples: list[QualitySample] = field(default_factory=list)

    def kbps_first(self, seconds: float) -> float:
        """Mean received bitrate over the first ``seconds`` after the first frame, that
        frame's key frame included (it is what the viewer is shown first)."""
        return self.kbps_between(0.0, seconds)

    def kbps_between(self, start: float, end: float) -> float:
        def received_by(t: float) -> tuple[float, int]:
            if t <= 0.0:
                return 0.0, 0
            before = [(s.t, s.received_bytes) for s in self.samples if s.t <= t + 0.05]
            return before[-1] if before else (0.0, 0)

        (t0, b0), (t1, b1) = received_by(start), received_by(end)
        return (b1 - b0) * 8 / 1000 / (t1 - t0) if t1 > t0 else 0.0

    def fps_first(self, seconds: float) -> float:
        """Frames decoded per second over the first ``seconds``, the first frame included."""
        return sum(1 for t in self.frame_times if t < seconds) / seconds

    def size_at(self, seconds: float) -> tuple[int, int]:
        before = [s for s in self.samples if s.t <= seconds and s.width]
        return (before[-1].width, before[-1].height) if before else (0, 0)


async def _publisher_figures(room: rtc.Room) -> tuple[float, float]:
    """(bandwidth estimate, encoder target) of ``room``'s publishing side, in kbps."""
    stats = await room.get_rtc_stats()
    target = sum(
        entry.outbound_rtp.outbound.target_bitrate
        for entry in stats.publisher_stats
        if entry.WhichOneof("stats") == "outbound_rtp" and entry.outbound_rtp.stream.kind == "video"
    )
    return bandwidth_estimate(stats) / 1000, target / 1000


async def _video_inbound(viewer: rtc.Room):
    stats = await viewer.get_rtc_stats()
    for entry in [*stats.subscriber_stats, *stats.publisher_stats]:
        if entry.WhichOneof("stats") == "inbound_rtp" and entry.inbound_rtp.stream.kind == "video":
            return entry.inbound_rtp
    return None


async def _video_bytes_received(viewer: rtc.Room) -> int:
    rtp = await _video_inbound(viewer)
    return int(rtp.inbound.bytes_received) if rtp is not None else 0


async def probe_quality(
    info: ServerInfo, *, seconds: float = 2.0, step: float = 0.1, **avatar_options
) -> QualityProbe:
    room = f"q-{uuid.uuid4().hex[:8]}"
    viewer = rtc.Room()
    published_at: list[float] = []
    subscribed = asyncio.Event()
    first_frame = asyncio.Event()
    readers: list[asyncio.Task] = []
    state: dict = {}
    probe = QualityProbe(quality="")

    def on_published(publication, participant):
        if publication.kind == rtc.TrackKind.KIND_VIDEO and not published_at:
            published_at.append(time.monotonic())

    def on_track(track, publication, participant):
        if track.kind != rtc.TrackKind.KIND_VIDEO:
            return
        state["subscribed_at"] = time.monotonic()
        state["codec"] = publication.mime_type
        state["simulcast"] = publication.simulcasted
        subscribed.set()

        async def read():
            async for ev in rtc.VideoStream(track):
                now = time.monotonic()
                if "first_frame_at" not in state:
                    state["first_frame_at"] = now
                    state["first_size"] = (ev.frame.width, ev.frame.height)
                    first_frame.set()
                probe.frame_times.append(now - state["first_frame_at"])

        readers.append(asyncio.ensure_future(read()))

    viewer.on("track_published", on_published)
    viewer.on("track_subscribed", on_track)
    await viewer.connect(info.url, make_token(info, room, f"viewer-{uuid.uuid4().hex[:4]}"))
    agent_room, session, avatar = await agent_with_avatar(
        info, room, face_pipeline=TexturedPipeline(), **avatar_options
    )
    probe.quality = avatar.options.video.quality
    probe.cap_kbps = avatar.options.video.max_bitrate / 1000
    try:
        await asyncio.wait_for(subscribed.wait(), 15)
        avatar_room = avatar._transport._avatar_room
        probe.estimate_at_subscribe_kbps, _ = await _publisher_figures(avatar_room)
        await asyncio.wait_for(first_frame.wait(), 10)
        t0 = state["first_frame_at"]
        probe.codec_mime, probe.simulcast = state["codec"], state["simulcast"]
        probe.first_frame_size = state["first_size"]
        if published_at:
            probe.published_to_first_frame_s = t0 - published_at[0]
        # Only the key frame that starts the subscription has arrived by now.
        probe.first_frame_bytes = await _video_bytes_received(viewer)
        while time.monotonic() - t0 < seconds:
            await asyncio.sleep(step)
            rtp = await _video_inbound(viewer)
            _, target = await _publisher_figures(avatar_room)
            if rtp is None:
                continue
            probe.samples.append(
                QualitySample(
                    t=time.monotonic() - t0,
                    width=rtp.inbound.frame_width,
                    height=rtp.inbound.frame_height,
                    received_bytes=int(rtp.inbound.bytes_received),
                    target_kbps=target,
                )
            )
    finally:
        await shut_down(session, avatar, agent_room, viewer, readers=readers)
    return probe
