"""Input the avatar must not trust, from real participants in a real room: speech streams
and interruptions on the avatar's topics from anyone but its agent are ignored and logged,
never played; a speech stream longer than any reply is cut, and the avatar goes on."""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from contextlib import asynccontextmanager

import numpy as np
import pytest
from livekit import rtc
from livekit.agents.voice.avatar import DataStreamAudioReceiver

from livekit_avatar_plugin import _incoming_speech as incoming_speech
from livekit_avatar_plugin._config import VideoOptions
from livekit_avatar_plugin._publisher import AvatarPublisher

from .av_harness import make_token
from .fakes import tone_track
from .test_generator import make_generator

HEADER = {"sample_rate": "24000", "num_channels": "1"}


class Rig:
    """An agent, its avatar (a publisher fed by LiveKit's receiver) and a third participant."""

    def __init__(self) -> None:
        self.agent, self.avatar, self.intruder = rtc.Room(), rtc.Room(), rtc.Room()
        self.finished: list[dict] = []
        self.played: list[np.ndarray] = []  # every audio slice the avatar published
        self.died: list[str] = []
        self.publisher: AvatarPublisher | None = None

    def on_published(self, kind: str, t: float, frame: object) -> None:
        if kind == "audio":
            self.played.append(np.frombuffer(frame.data, np.int16).copy())  # type: ignore[attr-defined]

    def loud_seconds(self) -> float:
        """Seconds of published audio in slices that carry sound (the rest is silence)."""
        return sum(len(s) for s in self.played if np.abs(s).max(initial=0) > 1000) / 24000

    async def send(self, room: rtc.Room, pcm: np.ndarray) -> None:
        writer = await room.local_participant.stream_bytes(
            "speech", topic="lk.audio_stream", attributes=HEADER, destination_identities=["avatar"]
        )
        for k in range(0, len(pcm), 4800):
            await writer.write(pcm[k:k + 4800].tobytes())
        await writer.aclose()

    async def wait_finished(self, n: int, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.finished) < n:
            assert time.monotonic() < deadline, f"{len(self.finished)} of {n} segments reported finished"
            await asyncio.sleep(0.02)


@asynccontextmanager
async def rig(info):
    r = Rig()
    room_name = f"foreign-{uuid.uuid4().hex[:8]}"
    await r.agent.connect(info.url, make_token(info, room_name, "agent", agent=True))
    await r.avatar.connect(info.url, make_token(info, room_name, "avatar"))
    await r.intruder.connect(info.url, make_token(info, room_name, "intruder"))
    r.agent.local_participant.register_rpc_method(
        "lk.playback_finished", lambda data: r.finished.append(json.loads(data.payload)) or "ok"
    )
    r.agent.local_participant.register_rpc_method("lk.playback_started", lambda data: "ok")
    r.publisher = AvatarPublisher(
        r.avatar,
        audio_receiver=DataStreamAudioReceiver(r.avatar, sender_identity="agent"),
        speech_sender="agent",
        generator=make_generator(),
        video=VideoOptions(width=64, height=64),
        on_published=r.on_published,
        on_died=r.died.append,
    )
    await r.publisher.start()
    try:
        yield r
    finally:
        await r.publisher.aclose()
        for room in (r.intruder, r.avatar, r.agent):
            await room.disconnect()


@pytest.mark.livekit_server
async def test_foreign_speech_streams_and_interruptions_are_ignored_and_logged(livekit_server, caplog):
    async with rig(livekit_server) as r:
        with caplog.at_level(logging.WARNING):
            # Three loud streams from a participant that is not the agent: none plays.
            for _ in range(3):
                await r.send(r.intruder, tone_track(0.5, hz=1000))
            await asyncio.sleep(1.5)
            foreign_played = r.loud_seconds()
            assert r.finished == []  # nothing was played, so nothing was reported to the agent
            # The agent speaks 1 s; the intruder tries to interrupt it half-way.
            sending = asyncio.create_task(r.send(r.agent, tone_track(1.0)))
            await asyncio.sleep(0.5)
            reply = await r.intruder.local_participant.perform_rpc(
                destination_identity="avatar", method="lk.clear_buffer", payload=""
            )
            await sending
            await r.wait_finished(1)
        assert foreign_played == 0
        assert reply == "reject"
        assert not r.finished[0]["interrupted"]
        assert r.finished[0]["playback_position"] == pytest.approx(1.0, abs=0.06)
        assert r.loud_seconds() == pytest.approx(1.0, abs=0.08)  # the agent's second, all of it
        assert caplog.text.count("ignored a speech stream from intruder") == 3
        assert r.died == []


@pytest.mark.livekit_server
async def test_an_oversized_speech_stream_is_cut_and_the_next_one_plays(livekit_server, caplog, monkeypatch):
    monkeypatch.setattr(incoming_speech, "MAX_SEGMENT_S", 0.5)  # a 30-minute stream, scaled down
    async with rig(livekit_server) as r:
        with caplog.at_level(logging.ERROR):
            await r.send(r.agent, tone_track(2.0))
            await r.wait_finished(1)
            await r.send(r.agent, tone_track(0.3))
            await r.wait_finished(2)
        assert r.finished[0]["playback_position"] == pytest.approx(0.5, abs=0.06)
        assert r.finished[1]["playback_position"] == pytest.approx(0.3, abs=0.06)
        assert not any(f["interrupted"] for f in r.finished)
        assert "ran past 0.5 s of audio" in caplog.text
        assert r.died == []
