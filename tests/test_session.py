"""AvatarSession: options, the avatar's token, joining and leaving a real room."""

from __future__ import annotations

import asyncio
import time
import uuid

import jwt
import pytest
from livekit import rtc
from livekit.agents import Agent, AgentSession
from livekit.agents.voice import room_io
from pydantic import ValidationError

from livekit_avatar_plugin import AvatarSession, VideoOptions

from .av_harness import make_token
from .fakes import ScriptedLLM, SignalTTS
from .pattern_pipeline import TestPatternPipeline


def test_invalid_options_fail_at_construction_naming_the_field():
    with pytest.raises(ValidationError, match="max_duration_s"):
        AvatarSession(max_duration_s=0)
    with pytest.raises(ValidationError, match="width"):
        AvatarSession(video=VideoOptions(width=511))
    with pytest.raises(ValidationError, match="mode"):
        AvatarSession(mode="hologram")
    with pytest.raises(ValidationError, match="not_an_option"):
        AvatarSession(not_an_option=1)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        AvatarSession(avatar="/no/such/avatar")


def test_each_session_gets_a_unique_identity():
    a, b = AvatarSession(), AvatarSession()
    assert a.avatar_identity != b.avatar_identity
    assert a.avatar_identity.startswith("avatar-")


def test_avatar_token_is_least_privilege_and_bounded_by_max_duration():
    avatar = AvatarSession(max_duration_s=600, avatar_name="Ava")
    token = avatar._mint_token("room-1", "agent-1", "key", "secret-secret-secret-secret-secret")
    claims = jwt.decode(token, options={"verify_signature": False})
    video = claims["video"]
    assert claims["sub"] == avatar.avatar_identity
    assert claims["name"] == "Ava"
    assert claims["attributes"] == {"lk.publish_on_behalf": "agent-1"}
    assert video["roomJoin"] is True and video["room"] == "room-1"
    assert sorted(video["canPublishSources"]) == ["camera", "microphone"]
    assert video["canSubscribe"] is False
    for admin in ("roomAdmin", "roomCreate", "roomList", "roomRecord", "ingressAdmin"):
        assert not video.get(admin)
    assert claims["exp"] - claims["nbf"] <= 600


def test_missing_credentials_name_the_variables(monkeypatch):
    for var in ("LIVEKIT_URL", "LIVEKIT_API_KEY", "LIVEKIT_API_SECRET"):
        monkeypatch.delenv(var, raising=False)
    avatar = AvatarSession()
    with pytest.raises(Exception, match="LIVEKIT_URL, LIVEKIT_API_KEY, LIVEKIT_API_SECRET"):
        avatar._credentials()


async def _agent_with_avatar(info, room_name: str, **avatar_options):
    agent_room = rtc.Room()
    await agent_room.connect(
        info.url, make_token(info, room_name, f"agent-{uuid.uuid4().hex[:6]}", agent=True)
    )
    session = AgentSession(llm=ScriptedLLM(["clicks 1"]), tts=SignalTTS())
    avatar = AvatarSession(
        face_pipeline=TestPatternPipeline(),
        livekit_url=info.url,
        api_key=info.api_key,
        api_secret=info.api_secret,
        **avatar_options,
    )
    await avatar.start(session, room=agent_room)
    await session.start(
        Agent(instructions="test"),
        room=agent_room,
        room_options=room_io.RoomOptions(
            audio_input=False, text_input=False, close_on_disconnect=False
        ),
    )
    return agent_room, session, avatar


class _Watcher:
    """A user in the room who notes when the avatar arrives and leaves."""

    def __init__(self) -> None:
        self.room = rtc.Room()
        self.left: dict[str, float] = {}
        self.video_from: set[str] = set()
        self.room.on("participant_disconnected", self._left)
        self.room.on("track_published", self._published)

    def _left(self, p: rtc.RemoteParticipant) -> None:
        self.left[p.identity] = time.monotonic()

    def _published(self, pub: rtc.RemoteTrackPublication, p: rtc.RemoteParticipant) -> None:
        if pub.kind == rtc.TrackKind.KIND_VIDEO:
            self.video_from.add(p.identity)

    async def wait_video(self, identity: str, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while identity not in self.video_from:
            for p in self.room.remote_participants.values():
                if p.identity == identity and any(
                    t.kind == rtc.TrackKind.KIND_VIDEO for t in p.track_publications.values()
                ):
                    self.video_from.add(identity)
            if time.monotonic() > deadline:
                raise AssertionError(f"{identity} never published video")
            await asyncio.sleep(0.05)


@pytest.mark.livekit_server
async def test_avatar_joins_publishes_on_behalf_and_leaves_within_2s_when_agent_disconnects(
    livekit_server,
):
    room_name = f"leave-{uuid.uuid4().hex[:8]}"
    agent_room, session, avatar = await _agent_with_avatar(livekit_server, room_name)
    watcher = _Watcher()
    await watcher.room.connect(livekit_server.url, make_token(livekit_server, room_name, "user-1"))
    try:
        await watcher.wait_video(avatar.avatar_identity)
        avatar_p = next(
            p
            for p in watcher.room.remote_participants.values()
            if p.identity == avatar.avatar_identity
        )
        assert avatar_p.attributes.get("lk.publish_on_behalf") == agent_room.local_participant.identity
        # The agent publishes no audio of its own: its speech goes through the avatar.
        agent_p = watcher.room.remote_participants[agent_room.local_participant.identity]
        assert not any(
            t.kind == rtc.TrackKind.KIND_AUDIO for t in agent_p.track_publications.values()
        )

        t0 = time.monotonic()
        await agent_room.disconnect()  # the agent's job ends abruptly
        deadline = t0 + 5.0
        while avatar.avatar_identity not in watcher.left and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        assert avatar.avatar_identity in watcher.left, "avatar stayed after the agent left"
        assert watcher.left[avatar.avatar_identity] - t0 <= 2.0
    finally:
        await session.aclose()
        await avatar.aclose()
        await watcher.room.disconnect()


@pytest.mark.livekit_server
async def test_aclose_leaves_the_room_and_releases_the_render_thread(livekit_server):
    import threading

    room_name = f"close-{uuid.uuid4().hex[:8]}"
    before = {t.name for t in threading.enumerate()}
    agent_room, session, avatar = await _agent_with_avatar(livekit_server, room_name)
    watcher = _Watcher()
    await watcher.room.connect(livekit_server.url, make_token(livekit_server, room_name, "user-2"))
    try:
        await watcher.wait_video(avatar.avatar_identity)
        closed = asyncio.Event()
        avatar.on("avatar_closed", lambda _: closed.set())
        t0 = time.monotonic()
        await avatar.aclose()
        assert closed.is_set()
        deadline = t0 + 2.0
        while avatar.avatar_identity not in watcher.left and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        assert avatar.avatar_identity in watcher.left
        await asyncio.sleep(0.2)
        leftover = {
            t.name for t in threading.enumerate() if t.name.startswith("avatar-render")
        } - before
        assert not leftover, f"render threads still alive: {leftover}"
        await avatar.aclose()  # idempotent
    finally:
        await session.aclose()
        await agent_room.disconnect()
        await watcher.room.disconnect()
