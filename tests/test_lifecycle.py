"""Timeouts end the session cleanly, with a reason the app receives (real server)."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest

from livekit_avatar_plugin import AvatarClosedEvent, CloseReason

from .av_harness import make_token
from .rooms import Watcher, agent_with_avatar

pytestmark = pytest.mark.livekit_server


async def _closed_event(avatar) -> asyncio.Future:
    fut: asyncio.Future = asyncio.get_running_loop().create_future()
    avatar.on("avatar_closed", lambda ev: fut.done() or fut.set_result((time.monotonic(), ev)))
    return fut


async def test_idle_timeout_waits_for_speech_to_end_then_closes(livekit_server, caplog):
    room = f"idle-{uuid.uuid4().hex[:8]}"
    agent_room, session, avatar = await agent_with_avatar(
        livekit_server, room, idle_timeout_s=1.0
    )
    watcher = Watcher()
    await watcher.room.connect(livekit_server.url, make_token(livekit_server, room, "user-idle"))
    closed = await _closed_event(avatar)
    agent_closed = asyncio.Event()
    session.on("close", lambda _: agent_closed.set())
    try:
        await watcher.wait_video(avatar.avatar_identity)
        t_speech = time.monotonic()
        await session.say("clicks 2.5").wait_for_playout()
        t_end = time.monotonic()
        t_closed, ev = await asyncio.wait_for(closed, 10)
        assert isinstance(ev, AvatarClosedEvent)
        assert ev.reason == CloseReason.IDLE_TIMEOUT
        # Speaking is not idleness: the clock started when the speech ended.
        assert t_closed - t_speech >= 2.5 + 1.0 - 0.2
        assert 0.8 <= t_closed - t_end <= 3.0
        await asyncio.wait_for(agent_closed.wait(), 5)  # the agent session closed too
        assert any("idle_timeout" in r.getMessage() for r in caplog.records)
    finally:
        await avatar.aclose()
        await agent_room.disconnect()
        await watcher.room.disconnect()


async def test_user_absent_timeout_counts_from_the_last_user_leaving(livekit_server):
    room = f"absent-{uuid.uuid4().hex[:8]}"
    agent_room, session, avatar = await agent_with_avatar(
        livekit_server, room, user_absent_timeout_s=10, idle_timeout_s=None
    )
    watcher = Watcher()
    await watcher.room.connect(livekit_server.url, make_token(livekit_server, room, "user-away"))
    closed = await _closed_event(avatar)
    try:
        await watcher.wait_video(avatar.avatar_identity)
        # The agent learns of a new participant a moment after it joins.
        deadline = time.monotonic() + 10
        while "user-away" not in {p.identity for p in agent_room.remote_participants.values()}:
            assert time.monotonic() < deadline, "the agent never saw the user join"
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)
        assert not closed.done()
        t_left = time.monotonic()
        await watcher.room.disconnect()
        t_closed, ev = await asyncio.wait_for(closed, 20)
        assert ev.reason == CloseReason.USER_ABSENT
        # The server tells the agent about a departure a second or three late.
        assert 9.5 <= t_closed - t_left <= 14.0
    finally:
        await session.aclose()
        await avatar.aclose()
        await agent_room.disconnect()


async def test_max_duration_says_goodbye_then_closes(livekit_server):
    room = f"maxdur-{uuid.uuid4().hex[:8]}"
    agent_room, session, avatar = await agent_with_avatar(
        livekit_server, room, max_duration_s=2.0, goodbye="clicks 0.6"
    )
    watcher = Watcher()
    await watcher.room.connect(livekit_server.url, make_token(livekit_server, room, "user-max"))
    closed = await _closed_event(avatar)
    t0 = time.monotonic()
    try:
        t_closed, ev = await asyncio.wait_for(closed, 15)
        assert ev.reason == CloseReason.MAX_DURATION
        assert ev.duration_s >= 2.0
        # The goodbye played to the end before the avatar left.
        tts = session.tts
        assert [r.text for r in tts.history.records] == ["clicks 0.6"]
        assert t_closed - tts.history.records[0].first_byte_at >= 0.6
        # Two seconds of session, then the whole goodbye, then leave.
        assert ev.duration_s >= 2.0 + 0.6 - 0.05
        assert t_closed - t0 <= 2.0 + 0.6 + 3.0
    finally:
        await avatar.aclose()
        await agent_room.disconnect()
        await watcher.room.disconnect()


def test_timeouts_are_validated():
    from pydantic import ValidationError

    from livekit_avatar_plugin import AvatarSession

    with pytest.raises(ValidationError, match="user_absent_timeout_s"):
        AvatarSession(user_absent_timeout_s=5)
    with pytest.raises(ValidationError, match="max_duration_s"):
        AvatarSession(max_duration_s=86401)
    with pytest.raises(ValidationError, match="idle_timeout_s"):
        AvatarSession(idle_timeout_s=0)
    assert AvatarSession(idle_timeout_s=None).options.idle_timeout_s is None
    defaults = AvatarSession().options
    assert (defaults.idle_timeout_s, defaults.user_absent_timeout_s, defaults.max_duration_s) == (
        120.0,
        60.0,
        3600.0,
    )
