"""Room fixtures for tests: an agent with an avatar, and a user who watches."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid

import numpy as np
from livekit import rtc
from livekit.agents import Agent, AgentSession
from livekit.agents.voice import room_io

from livekit_avatar_plugin import AvatarSession

from .av_harness import click_onsets, make_token
from .fakes import ScriptedLLM, SignalTTS
from .pattern_pipeline import TestPatternPipeline


async def agent_with_avatar(
    info,
    room_name: str,
    *,
    replies=("clicks 1",),
    tts=None,
    llm=None,
    user=None,
    agent=None,
    session_options=None,
    observe=None,
    typed=False,
    sync_transcription=True,
    **avatar_options,
):
    """An agent (scripted LLM, ``tts`` or the signal TTS) whose avatar has started.

    The avatar uses the test-pattern face unless ``face_pipeline`` is given; pass
    ``face_pipeline=None`` for the shipped face. ``user`` (a ``ScriptedUser``) gives the
    agent ears: its fake VAD and STT. ``agent`` replaces the plain test ``Agent``;
    ``session_options`` are extra ``AgentSession`` keyword arguments; ``observe(session,
    avatar)`` runs before anything starts, so it sees every event. ``typed`` lets the
    agent read chat messages (through the avatar's protection-aware text callback).
    ``sync_transcription=False`` sends the agent's transcript as it is written instead of
    paced with the speech (LiveKit's pacing estimates the speaking rate from the audio).
    """
    agent_room = rtc.Room()
    await agent_room.connect(
        info.url, make_token(info, room_name, f"agent-{uuid.uuid4().hex[:6]}", agent=True)
    )
    ears = {}
    if user is not None:
        # VAD barge-in, as an offline deployment has (adaptive detection is a cloud model),
        # from the first word (no echo-canceller warm-up: the scripted user has no echo).
        ears = {
            "vad": user.vad,
            "stt": user.stt,
            "turn_handling": {"interruption": {"mode": "vad"}},
            "aec_warmup_duration": None,
        }
    session = AgentSession(
        llm=llm or ScriptedLLM(list(replies)),
        tts=tts or SignalTTS(),
        **ears,
        **(session_options or {}),
    )
    avatar_options.setdefault("face_pipeline", TestPatternPipeline())
    # Tests script every line the agent says; the opening is tested on its own.
    avatar_options.setdefault("first_message", {"enabled": False})
    avatar_options.setdefault("livekit_url", info.url)
    avatar_options.setdefault("api_key", info.api_key)
    avatar_options.setdefault("api_secret", info.api_secret)
    avatar = AvatarSession(**avatar_options)
    if observe is not None:
        observe(session, avatar)
    await avatar.start(session, room=agent_room)
    await session.start(
        agent or Agent(instructions="test"),
        room=agent_room,
        room_options=room_io.RoomOptions(
            audio_input=False,
            text_input=room_io.TextInputOptions(text_input_cb=avatar.text_input_cb)
            if typed
            else False,
            text_output=True
            if sync_transcription
            else room_io.TextOutputOptions(sync_transcription=False),
            close_on_disconnect=False,
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


class AudioWatcher(Watcher):
    """A user who also records every audio track, per participant, with arrival times."""

    def __init__(self) -> None:
        super().__init__()
        self.audio: dict[str, list[tuple[float, np.ndarray]]] = {}
        self.audio_track_at: dict[str, float] = {}
        self._readers: list[asyncio.Task] = []
        self.room.on("track_subscribed", self._subscribed)

    def _subscribed(self, track, publication, participant) -> None:
        if track.kind != rtc.TrackKind.KIND_AUDIO:
            return
        self.audio_track_at.setdefault(participant.identity, time.monotonic())
        frames = self.audio.setdefault(participant.identity, [])

        async def read() -> None:
            async for ev in rtc.AudioStream(track, sample_rate=24000, num_channels=1):
                frames.append((time.monotonic(), np.frombuffer(ev.frame.data, np.int16).copy()))

        self._readers.append(asyncio.ensure_future(read()))

    def click_onsets(self, identity: str) -> list[float]:
        return click_onsets(self.audio.get(identity, []))

    async def aclose(self) -> None:
        for task in self._readers:
            task.cancel()
        await asyncio.gather(*self._readers, return_exceptions=True)
        await self.room.disconnect()


def watch_video(room: rtc.Room, size: tuple[int, int], on_frame) -> list[asyncio.Task]:
    """Call ``on_frame(rgb)`` for every full-size video frame ``room`` receives (smaller
    simulcast layers, while they ramp up, are skipped); returns the reader tasks."""
    readers: list[asyncio.Task] = []

    def on_track(track, publication, participant) -> None:
        if track.kind != rtc.TrackKind.KIND_VIDEO:
            return

        async def read() -> None:
            async for ev in rtc.VideoStream(track, format=rtc.VideoBufferType.RGB24):
                f = ev.frame
                if (f.width, f.height) == size:
                    on_frame(np.frombuffer(f.data, np.uint8).reshape(f.height, f.width, 3))

        readers.append(asyncio.ensure_future(read()))

    room.on("track_subscribed", on_track)
    return readers


async def speak_and_watch(info, box: tuple[slice, slice], *, size: int = 512,
                          text: str = "Hello! My name is Ava, and I am happy to meet you today.",
                          **avatar_options) -> tuple[float, float, np.ndarray | None, np.ndarray]:
    """An agent with an avatar says ``text`` while a viewer watches ``box`` of its video.

    Returns the mouth motion per frame (mean absolute change in ``box``) while it speaks
    and in the 2 s after, a frame from 1 s into the speech and the last frame."""
    room = f"face-{uuid.uuid4().hex[:8]}"
    agent_room, session, avatar = await agent_with_avatar(info, room, **avatar_options)
    viewer = rtc.Room()
    mouth: list[tuple[float, np.ndarray]] = []
    frames: dict[str, np.ndarray] = {}

    def on_frame(rgb: np.ndarray) -> None:
        mouth.append((time.monotonic(), rgb[box].astype(np.int16)))
        frames["last"] = rgb
        if "speaking" in frames and "mid" not in frames:
            frames["mid"] = rgb.copy()

    readers = watch_video(viewer, (size, size), on_frame)
    try:
        await viewer.connect(info.url, make_token(info, room, "viewer-face"))
        deadline = time.monotonic() + 20
        while len(mouth) < 25 and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        assert mouth, "no full-size video reached the viewer"
        t_speech = time.monotonic()
        handle = session.say(text)
        await asyncio.sleep(1.0)
        frames["speaking"] = np.zeros(0)
        await asyncio.wait_for(handle.wait_for_playout(), 30)
        t_end = time.monotonic()
        await asyncio.sleep(2.5)
    finally:
        await shut_down(session, avatar, viewer, agent_room, readers=readers)

    def motion(t0: float, t1: float) -> float:
        crops = [c for t, c in mouth if t0 <= t <= t1]
        diffs = [np.abs(b - a).mean() for a, b in zip(crops, crops[1:])]
        return float(np.mean(diffs)) if diffs else 0.0

    return (motion(t_speech + 0.5, t_end - 0.2), motion(t_end + 0.8, t_end + 2.5),
            frames.get("mid"), frames["last"].copy())


async def shut_down(session, avatar, *rooms: rtc.Room, readers=()) -> None:
    """Stop reader tasks, close the agent session and avatar, leave the rooms."""
    for task in readers:
        task.cancel()
    await asyncio.gather(*readers, return_exceptions=True)
    await session.aclose()
    await avatar.aclose()
    for room in rooms:
        await room.disconnect()


class AgentRoom:
    """An agent with its avatar, and a watching user, in a fresh room; see ``agent_room``."""

    def __init__(self, room_name: str, agent_room, session, avatar, watcher) -> None:
        self.room_name = room_name
        self.agent_room = agent_room
        self.session = session
        self.avatar = avatar
        self.watcher = watcher
        self.failed: list = []
        avatar.on("avatar_failed", self.failed.append)

    @property
    def agent_id(self) -> str:
        return self.agent_room.local_participant.identity


@contextlib.asynccontextmanager
async def agent_room(info, prefix: str, *, watcher_cls=AudioWatcher, **avatar_options):
    """Set up an agent with an avatar and a watcher, and tear all of it down after."""
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    room, session, avatar = await agent_with_avatar(info, name, **avatar_options)
    watcher = watcher_cls()
    try:
        await watcher.room.connect(info.url, make_token(info, name, f"user-{prefix}"))
        yield AgentRoom(name, room, session, avatar, watcher)
    finally:
        await shut_down(session, avatar, room)
        closer = getattr(watcher, "aclose", None)
        await (closer() if closer else watcher.room.disconnect())


async def wait_until(predicate, timeout: float, what: str, *, poll_s: float = 0.02) -> None:
    """Poll ``predicate`` until it holds; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(poll_s)


async def inbound_media(room: rtc.Room) -> list[str]:
    """Kinds of the media this room's peer connections receive (WebRTC inbound-rtp)."""
    stats = await room.get_rtc_stats()
    return [
        e.inbound_rtp.stream.kind
        for e in [*stats.subscriber_stats, *stats.publisher_stats]
        if e.WhichOneof("stats") == "inbound_rtp" and e.inbound_rtp.received.packets_received
    ]


async def assert_agent_receives_none_of_its_avatar(agent: rtc.Room, avatar_identity: str) -> None:
    avatar_p = agent.remote_participants[avatar_identity]
    kinds = {p.kind for p in avatar_p.track_publications.values()}
    assert kinds == {rtc.TrackKind.KIND_AUDIO, rtc.TrackKind.KIND_VIDEO}
    await wait_until(
        lambda: not any(p.subscribed for p in avatar_p.track_publications.values()),
        5.0,
        "the agent's room to drop its avatar's tracks",
    )
    assert await inbound_media(agent) == []
