"""Room fixtures for tests: an agent with an avatar, and a user who watches."""

from __future__ import annotations

import asyncio
import time
import uuid

from livekit import rtc
from livekit.agents import Agent, AgentSession
from livekit.agents.voice import room_io

from livekit_avatar_plugin import AvatarSession

from .av_harness import make_token
from .fakes import ScriptedLLM, SignalTTS
from .pattern_pipeline import TestPatternPipeline


async def agent_with_avatar(info, room_name: str, *, replies=("clicks 1",), **avatar_options):
    agent_room = rtc.Room()
    await agent_room.connect(
        info.url, make_token(info, room_name, f"agent-{uuid.uuid4().hex[:6]}", agent=True)
    )
    session = AgentSession(llm=ScriptedLLM(list(replies)), tts=SignalTTS())
    avatar_options.setdefault("face_pipeline", TestPatternPipeline())
    avatar = AvatarSession(
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


class Watcher:
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
