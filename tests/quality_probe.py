"""What a subscriber receives in a session's first seconds: resolution, bitrate, codec."""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass, field

from livekit import rtc

from livekit_avatar_plugin.local_server import ServerInfo

from .av_harness import make_token
from .pattern_pipeline import TexturedPipeline
from .rooms import agent_with_avatar, shut_down


@dataclass
class QualitySample:
    t: float  # seconds since the avatar's video track reached the subscriber
    width: int
    height: int
    kbps: float  # since the previous sample


@dataclass
class QualityProbe:
    quality: str
    codec_mime: str = ""
    simulcast: bool = False  # the publication offers several layers
    first_frame_size: tuple[int, int] | None = None
    samples: list[QualitySample] = field(default_factory=list)

    def kbps_first(self, seconds: float) -> float:
        window = [s.kbps for s in self.samples if s.t <= seconds]
        return sum(window) / len(window) if window else 0.0

    def size_at(self, seconds: float) -> tuple[int, int]:
        before = [s for s in self.samples if s.t <= seconds and s.width]
        return (before[-1].width, before[-1].height) if before else (0, 0)


async def probe_quality(
    info: ServerInfo, *, seconds: float = 2.0, step: float = 0.25, **avatar_options
) -> QualityProbe:
    room = f"q-{uuid.uuid4().hex[:8]}"
    agent_room, session, avatar = await agent_with_avatar(
        info, room, face_pipeline=TexturedPipeline(), **avatar_options
    )
    viewer = rtc.Room()
    probe = QualityProbe(quality=avatar.options.video.quality)
    subscribed = asyncio.Event()
    first_frame = asyncio.Event()
    readers: list[asyncio.Task] = []

    def on_track(track, publication, participant):
        if track.kind != rtc.TrackKind.KIND_VIDEO:
            return
        probe.codec_mime = publication.mime_type
        probe.simulcast = publication.simulcasted
        subscribed.set()

        async def read():
            async for ev in rtc.VideoStream(track):
                if probe.first_frame_size is None:
                    probe.first_frame_size = (ev.frame.width, ev.frame.height)
                    first_frame.set()

        readers.append(asyncio.ensure_future(read()))

    viewer.on("track_subscribed", on_track)
    try:
        await viewer.connect(info.url, make_token(info, room, f"viewer-{uuid.uuid4().hex[:4]}"))
        await asyncio.wait_for(subscribed.wait(), 15)
        t0 = time.monotonic()
        last_bytes, last_t = 0, t0
        while time.monotonic() - t0 < seconds:
            await asyncio.sleep(step)
            stats = await viewer.get_rtc_stats()
            for entry in [*stats.subscriber_stats, *stats.publisher_stats]:
                if entry.WhichOneof("stats") != "inbound_rtp":
                    continue
                rtp = entry.inbound_rtp
                if rtp.stream.kind != "video":
                    continue
                now = time.monotonic()
                total = int(rtp.inbound.bytes_received)
                probe.samples.append(
                    QualitySample(
                        t=now - t0,
                        width=rtp.inbound.frame_width,
                        height=rtp.inbound.frame_height,
                        kbps=(total - last_bytes) * 8 / 1000 / (now - last_t),
                    )
                )
                last_bytes, last_t = total, now
                break
        await asyncio.wait_for(first_frame.wait(), 10)
    finally:
        await shut_down(session, avatar, agent_room, viewer, readers=readers)
    return probe
