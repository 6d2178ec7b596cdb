"""The LiveKit server restarts mid-session: the avatar rejoins and goes on, with no duplicates.

What a restart should do (decided here): it is an outage for everyone in the room, the
agent included, so it is neither the end of the session nor the avatar's death. Both
SDKs rejoin by themselves (a full reconnect republishes the local tracks); the session
keeps its avatar, speech in flight completes (``playback_finished`` arrives once the
agent is reachable again) and later speech goes through the avatar as before. Only if
the avatar does not follow the agent back within a grace period does the agent speak
without a face (see ``AvatarSession._watch_connections``).
"""

from __future__ import annotations

import asyncio
import contextlib
import time

import pytest
from livekit import api, rtc

from .av_harness import Subscriber, audio_onsets
from .fakes import click_times
from .rooms import agent_room

pytestmark = pytest.mark.livekit_server


async def server_tracks(info, room: str) -> dict[str, list[str]]:
    """Identity -> names of the tracks the server lists for it."""
    async with api.LiveKitAPI(info.http_url, info.api_key, info.api_secret) as lk:
        resp = await lk.room.list_participants(api.ListParticipantsRequest(room=room))
    return {p.identity: sorted(t.name for t in p.tracks) for p in resp.participants}


async def wait_republished(info, room: str, identity: str, timeout: float) -> float:
    """When the server lists ``identity`` with its audio and video tracks again."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):  # the server may still be starting its API
            if len((await server_tracks(info, room)).get(identity, [])) >= 2:
                return time.monotonic()
        await asyncio.sleep(0.1)
    raise AssertionError(f"{identity} did not republish within {timeout} s of the restart")


@pytest.mark.parametrize(
    ("kill", "quality"),
    [(True, "auto"), (False, "auto"), (True, "low")],
    ids=["crash", "graceful", "crash-one-layer"],
)
async def test_server_restart_mid_speech_the_avatar_rejoins_and_resumes(
    private_livekit_server, kill, quality
):
    # "low" is one layer, VP8 encoded by the plugin: the new subscription after the
    # restart must get a key frame from it.
    server = private_livekit_server
    info = server.info
    async with agent_room(info, "restart", video_quality=quality) as r:
        session, avatar, watcher = r.session, r.avatar, r.watcher
        closed: list = []
        avatar.on("avatar_closed", closed.append)
        await watcher.wait_video(avatar.avatar_identity)
        viewer = Subscriber(info, r.room_name, avatar.avatar_identity)
        await viewer.connect()
        publisher = avatar._transport.publisher
        try:
            handle = session.say("clicks 4")
            await asyncio.sleep(1.0)
            t_down = time.monotonic()
            await asyncio.to_thread(server.restart, down_s=1.0, kill=kill)
            t_back = time.monotonic()
            rejoin = asyncio.create_task(
                wait_republished(info, r.room_name, avatar.avatar_identity, 10)
            )

            # Speech that was playing when the server went away completes; nothing hangs.
            await asyncio.wait_for(handle.wait_for_playout(), 20)
            republished = await rejoin
            # Video frames reach a viewer again.
            deadline = time.monotonic() + 10
            while not any(t > t_back for t, _ in viewer.capture.video):
                assert time.monotonic() < deadline, "no video reached the viewer after the restart"
                await asyncio.sleep(0.05)
            first_frame = next(t for t, _ in viewer.capture.video if t > t_back)
            print(
                f"\nserver down {t_back - t_down:.1f} s ({'killed' if kill else 'SIGTERM'}); "
                f"avatar tracks listed again {republished - t_back:.2f} s and first video frame "
                f"at a viewer {first_frame - t_back:.2f} s after the server was back"
            )
            assert republished - t_back <= 10.0
            assert first_frame - t_back <= 10.0

            # The same session, the same publisher: no failover, no close.
            assert r.failed == [] and closed == []
            assert avatar._transport.publisher is publisher

            # Later speech goes through the avatar, and is heard once. (The viewer takes
            # its own time to subscribe to the republished audio: wait for its frames.)
            deadline = time.monotonic() + 10
            while not any(t > first_frame for t, _ in viewer.capture.audio):
                assert time.monotonic() < deadline, "no audio reached the viewer after the restart"
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.5)  # its jitter buffer settles
            t_say = time.monotonic()
            after = session.say("clicks 2")
            await asyncio.wait_for(after.wait_for_playout(), 15)
            assert not after.interrupted
            await asyncio.sleep(0.8)
            heard = audio_onsets(viewer.capture, after=t_say, before=time.monotonic())
            assert len(heard) == len(click_times(2.0))
            assert r.agent_id not in watcher.audio_track_at  # the agent never spoke by itself

            # Exactly one audio and one video track: the republish made no duplicates.
            tracks = await server_tracks(info, r.room_name)
            assert tracks[avatar.avatar_identity] == ["avatar_audio", "avatar_video"]
            lp = avatar._transport._avatar_room.local_participant
            kinds = sorted(p.kind for p in lp.track_publications.values())
            assert kinds == sorted([rtc.TrackKind.KIND_AUDIO, rtc.TrackKind.KIND_VIDEO])
        finally:
            await viewer.aclose()


async def test_a_full_reconnect_of_the_avatar_alone_is_ridden_out(private_livekit_server):
    """The avatar's SDK rebuilding its connection (the server swaps its session) is not
    the agent leaving and, when it is quick, not the avatar's death either."""
    info = private_livekit_server.info
    async with agent_room(info, "solo") as r:
        avatar = r.avatar
        await r.watcher.wait_video(avatar.avatar_identity)
        await avatar._transport._avatar_room.simulate_scenario(rtc.SimulateScenarioKind.SIMULATE_FULL_RECONNECT)
        await wait_republished(info, r.room_name, avatar.avatar_identity, 10)
        await asyncio.sleep(1.5)
        assert r.failed == [] and not avatar._closing
        handle = r.session.say("clicks 1")
        await asyncio.wait_for(handle.wait_for_playout(), 10)
        assert not handle.interrupted
        tracks = await server_tracks(info, r.room_name)
        assert tracks[avatar.avatar_identity] == ["avatar_audio", "avatar_video"]
