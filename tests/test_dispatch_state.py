"""A dispatched avatar shows listening and thinking as an in-process one does: it reads
the agent's state from the agent's participant attribute and the user's speech from the
room's active speakers, in a real room."""

from __future__ import annotations

import asyncio
import time
import types
import uuid

import numpy as np
import pytest
from livekit import rtc

from livekit_avatar_plugin._dispatch.follow import follow_conversation
from livekit_avatar_plugin._state import ConversationState as S

from .av_harness import make_token

pytestmark = pytest.mark.livekit_server


async def _until(states: list[S], want: S, timeout: float = 5.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if states and states[-1] == want:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"the avatar never showed {want.value}: {[s.value for s in states]}")


async def _speak(source: rtc.AudioSource, seconds: float, loud: bool) -> None:
    rate, n = 48000, 480
    t = np.arange(n) / rate
    for k in range(int(seconds * 100)):
        tone = (0.5 if loud else 0.0) * np.sin(2 * np.pi * 220 * (t + k * n / rate))
        pcm = (tone * 32767).astype(np.int16)
        await source.capture_frame(rtc.AudioFrame(pcm.tobytes(), rate, 1, n))


async def test_a_dispatched_avatar_follows_the_agent_state_and_the_users_speech(livekit_server):
    info = livekit_server
    room = f"state-{uuid.uuid4().hex[:8]}"
    request = types.SimpleNamespace(agent_identity="agent-1", avatar_identity="avatar-1")
    agent, avatar, user = rtc.Room(), rtc.Room(), rtc.Room()
    await agent.connect(info.url, make_token(info, room, "agent-1", agent=True, can_update_own_metadata=True))
    await avatar.connect(info.url, make_token(info, room, "avatar-1"))
    await user.connect(info.url, make_token(info, room, "user-1"))
    states: list[S] = []
    detach = follow_conversation(avatar, request, states.append)
    try:
        await agent.local_participant.set_attributes({"lk.agent.state": "thinking"})
        await _until(states, S.THINKING)
        await agent.local_participant.set_attributes({"lk.agent.state": "listening"})
        await _until(states, S.IDLE)
        source = rtc.AudioSource(48000, 1)
        track = rtc.LocalAudioTrack.create_audio_track("mic", source)
        await user.local_participant.publish_track(track, rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE))
        speaking = asyncio.ensure_future(_speak(source, 4.0, loud=True))
        await _until(states, S.LISTENING, timeout=6.0)
        await speaking
        await _speak(source, 0.5, loud=False)
        await _until(states, S.IDLE, timeout=6.0)  # the user stopped: the agent listens again
        detach()
        count = len(states)
        await agent.local_participant.set_attributes({"lk.agent.state": "thinking"})
        await asyncio.sleep(1.0)
        assert len(states) == count  # detached: no more changes
    finally:
        for r in (user, avatar, agent):
            await r.disconnect()
