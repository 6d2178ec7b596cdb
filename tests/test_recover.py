"""Two-way failover: after the avatar dies and the agent speaks by itself, the face comes
back, and the next reply (never the current one) is spoken by it again. Nothing is lost
or said twice at either switch."""

from __future__ import annotations

import asyncio
import time

import pytest
from livekit import rtc

from livekit_avatar_plugin import AvatarRecoveredEvent, VideoOptions
from livekit_avatar_plugin._recovery import RetrySchedule

from .fakes import click_times
from .rooms import agent_room, wait_until

FACE_BACK_S = 5.0  # the target, from the crash to the face back on screen


def test_recover_tries_soon_then_less_often_and_at_most_3_a_minute():
    now = [0.0]
    schedule = RetrySchedule(clock=lambda: now[0])
    tries = []
    for _ in range(8):  # each try fails at once
        now[0] += schedule.next_delay()
        tries.append(now[0])
    assert tries[:3] == [1.0, 5.0, 21.0]  # 1 s, then 4x longer
    for i, t in enumerate(tries):
        assert sum(t - 60 < u <= t for u in tries[: i + 1]) <= 3, tries
    # Back, then dead again: the first try is quick again, but the minute's limit holds.
    schedule.reset()
    now[0] = tries[-1] + 0.5
    delay = schedule.next_delay()
    assert delay == max(1.0, tries[-3] + 60 - now[0])


def test_recover_a_face_that_keeps_dying_is_tried_at_most_3_times_a_minute():
    now = [0.0]
    schedule = RetrySchedule(clock=lambda: now[0])
    tries = []
    for _ in range(6):  # back after each try, dead again a moment later
        now[0] += schedule.next_delay()
        tries.append(now[0])
        schedule.reset()
        now[0] += 0.2
    assert tries[:3] == pytest.approx([1.0, 2.2, 3.4])
    assert tries[3] >= tries[0] + 60 - 1e-9 and tries[4] >= tries[1] + 60 - 1e-9


def _agent_publishes_audio(watcher, agent_id: str) -> bool:
    p = watcher.room.remote_participants.get(agent_id)
    return p is not None and any(
        t.kind == rtc.TrackKind.KIND_AUDIO for t in p.track_publications.values()
    )


@pytest.mark.livekit_server
async def test_recover_participant_face_comes_back_for_the_next_reply(livekit_server):
    async with agent_room(livekit_server, "recover") as r:
        session, avatar, watcher, agent_id = r.session, r.avatar, r.watcher, r.agent_id
        recovered: list[AvatarRecoveredEvent] = []
        avatar.on("avatar_recovered", recovered.append)
        await watcher.wait_video(avatar.avatar_identity)
        await asyncio.sleep(0.5)
        clicks = click_times(5.0)
        handle = session.say("clicks 5")
        target = next((a + b) / 2 for a, b in zip(clicks, clicks[1:]) if a > 0.8)
        await wait_until(lambda: avatar._transport.publisher.heard_position() >= target, 10, "speech")
        t_kill = time.monotonic()
        await avatar._transport._avatar_room.disconnect()  # the avatar participant is gone

        # The face is back while the agent's own voice is still finishing this reply.
        await wait_until(lambda: recovered, FACE_BACK_S + 5, "avatar_recovered")
        t_back = time.monotonic()
        print(f"\nface back {t_back - t_kill:.2f} s after the crash ({recovered[0].down_s:.2f} s)")
        assert t_back - t_kill <= FACE_BACK_S
        assert r.failed and not handle.done(), "the reply should still be playing"
        await asyncio.wait_for(handle.wait_for_playout(), 15)  # never hangs
        assert not handle.interrupted
        t_first_done = time.monotonic()
        await asyncio.sleep(0.8)
        from_avatar = watcher.click_onsets(avatar.avatar_identity)
        from_agent = watcher.click_onsets(agent_id)
        # This reply: every click once, the avatar's before the crash, the agent's after;
        # none of it moved back to the face that returned mid-reply.
        assert len(from_avatar) + len(from_agent) == len(clicks), (from_avatar, from_agent)
        assert from_avatar and from_agent and max(from_avatar) < t_kill < min(from_agent)

        # The next reply is the face's, and the agent's own track is taken down.
        t_second = time.monotonic()
        assert t_second > t_first_done
        await asyncio.wait_for(session.say("clicks 1.5").wait_for_playout(), 15)
        await asyncio.sleep(0.8)
        new_from_avatar = [t for t in watcher.click_onsets(avatar.avatar_identity) if t > t_second]
        new_from_agent = [t for t in watcher.click_onsets(agent_id) if t > t_second]
        assert len(new_from_avatar) == len(click_times(1.5)) and not new_from_agent
        await wait_until(lambda: not _agent_publishes_audio(watcher, agent_id), 5, "agent track gone")

        # And it can fail over again: the limit is on tries, not on recoveries.
        recovered.clear()
        await avatar._transport._avatar_room.disconnect()
        await wait_until(lambda: len(r.failed) == 2, 5, "a second avatar_failed")
        handle = session.say("clicks 1.5")
        await asyncio.wait_for(handle.wait_for_playout(), 15)
        assert not handle.interrupted


@pytest.mark.livekit_server
async def test_recover_dispatch_face_moves_to_a_live_worker(livekit_server, start_avatar_worker):
    import uuid

    name = f"recover-{uuid.uuid4().hex[:6]}"
    workers = [start_avatar_worker(name, capacity=2), start_avatar_worker(name, capacity=2)]
    async with agent_room(
        livekit_server, "recover-d", mode="dispatch", agent_name=name,
        video=VideoOptions(quality="low", width=128, height=128), dispatch_timeout_s=20.0,
    ) as r:  # fmt: skip
        session, avatar, watcher, agent_id = r.session, r.avatar, r.watcher, r.agent_id
        recovered: list[AvatarRecoveredEvent] = []
        back_at: list[float] = []
        avatar.on("avatar_recovered", lambda ev: (recovered.append(ev), back_at.append(time.monotonic())))
        first = avatar.avatar_identity
        await watcher.wait_video(first)
        serving = next(w for w in workers if first in w.rendered())
        t_kill = time.monotonic()
        serving.kill()  # the worker process crashes, with the avatar it was rendering

        await wait_until(lambda: r.failed, 10, "avatar_failed")
        t_failed = time.monotonic()
        # Meanwhile the agent speaks by itself, and say() returns.
        handle = session.say("clicks 1")
        await asyncio.wait_for(handle.wait_for_playout(), 15)
        await wait_until(lambda: recovered, 30, "avatar_recovered")
        t_back = back_at[0]
        print(
            f"\ncrash -> failed {t_failed - t_kill:.2f} s, -> back {t_back - t_kill:.2f} s; "
            f"new identity {avatar.avatar_identity}"
        )
        assert t_back - t_kill <= FACE_BACK_S
        second = avatar.avatar_identity
        assert second != first
        survivor = next(w for w in workers if w is not serving)
        await wait_until(lambda: second in survivor.rendered(), 5, "the survivor renders it")
        await watcher.wait_video(second)
        await asyncio.sleep(0.5)
        t_next = time.monotonic()
        await asyncio.wait_for(session.say("clicks 1.5").wait_for_playout(), 15)
        await asyncio.sleep(0.8)
        assert len([t for t in watcher.click_onsets(second) if t > t_next]) == len(click_times(1.5))
        assert not [t for t in watcher.click_onsets(agent_id) if t > t_next]
