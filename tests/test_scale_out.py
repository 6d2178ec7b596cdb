"""Scale-out: two avatar worker processes serve the rooms of one agent name.

Lean on purpose: the test-pattern face (``--face-pipeline``), small video, short speech.
"""

from __future__ import annotations

import asyncio
import uuid

import pytest

from livekit_avatar_plugin import VideoOptions

from .rooms import agent_with_avatar, shut_down

pytestmark = pytest.mark.livekit_server

SMALL = VideoOptions(quality="low", width=128, height=128)


async def _open_rooms(info, agent_name: str, count: int) -> list[tuple]:
    return list(
        await asyncio.gather(
            *(
                agent_with_avatar(
                    info,
                    f"{agent_name}-{uuid.uuid4().hex[:6]}",
                    replies=("clicks 0.5",),
                    mode="dispatch",
                    agent_name=agent_name,
                    video=SMALL,
                    dispatch_timeout_s=20.0,
                )
                for _ in range(count)
            )
        )
    )


async def _close_rooms(rooms: list[tuple]) -> None:
    await asyncio.gather(*(shut_down(s, a, r) for r, s, a in rooms), return_exceptions=True)


async def test_jobs_spread_over_workers_and_move_off_a_dead_one(livekit_server, start_avatar_worker):
    name = f"scale-{uuid.uuid4().hex[:6]}"
    first = start_avatar_worker(name, capacity=4)
    second = start_avatar_worker(name, capacity=4)

    rooms = await _open_rooms(livekit_server, name, 6)
    try:
        failed: list = []
        for _, _, avatar in rooms:
            avatar.on("avatar_failed", failed.append)
        identities = {avatar.avatar_identity for _, _, avatar in rooms}
        on_first = identities & set(first.rendered())
        on_second = identities & set(second.rendered())
        print(f"\n6 rooms: {len(on_first)} on the first worker, {len(on_second)} on the second")
        assert on_first | on_second == identities and not on_first & on_second
        # Capacity 4 each: neither can have taken more than 4, so both took at least 2.
        assert len(on_first) >= 2 and len(on_second) >= 2
        # Every avatar speaks and reports its playback back to its agent.
        handles = [session.say("clicks 0.5") for _, session, _ in rooms]
        await asyncio.wait_for(asyncio.gather(*(h.wait_for_playout() for h in handles)), 30)
        assert not any(h.interrupted for h in handles)
        assert not failed
    finally:
        await _close_rooms(rooms)

    first.kill()
    rooms = await _open_rooms(livekit_server, name, 3)
    try:
        identities = {avatar.avatar_identity for _, _, avatar in rooms}
        assert identities <= set(second.rendered()), "new jobs must go to the surviving worker"
        assert all(avatar._transport.publisher is None and not avatar._failed for _, _, avatar in rooms)
    finally:
        await _close_rooms(rooms)
