"""AvatarSession: options, the avatar's token, joining and leaving a real room."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid

import jwt
import pytest
from livekit import rtc
from livekit.rtc.participant import PublishTrackError
from pydantic import ValidationError

from livekit_avatar_plugin import AvatarSession, VideoOptions

from .rooms import (
    Watcher,
    agent_room,
    assert_agent_receives_none_of_its_avatar,
    inbound_media,
    wait_until,
)


def test_invalid_options_fail_at_construction_naming_the_field():
    with pytest.raises(ValidationError, match="max_duration_s"):
        AvatarSession(max_duration_s=0)
    with pytest.raises(ValidationError, match="width"):
        AvatarSession(video=VideoOptions(width=511))
    with pytest.raises(ValidationError, match="mode"):
        AvatarSession(mode="hologram")
    with pytest.raises(TypeError, match="not_an_option"):
        AvatarSession(not_an_option=1)  # every option is an explicit keyword argument
    with pytest.raises(FileNotFoundError, match="does not exist"):
        AvatarSession(avatar="/no/such/avatar")


def test_each_session_gets_a_unique_identity():
    a, b = AvatarSession(), AvatarSession()
    assert a.avatar_identity != b.avatar_identity
    assert a.avatar_identity.startswith("avatar-")


def test_avatar_token_is_least_privilege_and_bounded_by_max_duration():
    avatar = AvatarSession(max_duration_s=600, avatar_name="Ava")
    token = avatar._transport._mint_token("room-1", "agent-1", "key", "secret-secret-secret-secret-secret")
    claims = jwt.decode(token, options={"verify_signature": False})
    video = claims["video"]
    assert claims["sub"] == avatar.avatar_identity
    assert claims["name"] == "Ava"
    # On behalf of its agent, and which speech codecs it reads: nothing secret.
    assert claims["attributes"] == {
        "lk.publish_on_behalf": "agent-1",
        "lk.avatar.audio_codecs": "opus,pcm",
    }
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
        avatar._transport._credentials.resolve()


async def _left_room_at(info, room: str, identity: str, timeout: float = 5.0) -> float | None:
    """When the server stopped listing ``identity`` in ``room`` (None: still there)."""
    from livekit import api

    deadline = time.monotonic() + timeout
    async with api.LiveKitAPI(info.http_url, info.api_key, info.api_secret) as lk:
        while time.monotonic() < deadline:
            resp = await lk.room.list_participants(api.ListParticipantsRequest(room=room))
            if identity not in {p.identity for p in resp.participants}:
                return time.monotonic()
            await asyncio.sleep(0.02)
    return None


@pytest.mark.livekit_server
async def test_avatar_joins_publishes_on_behalf_and_leaves_within_2s_when_agent_disconnects(
    livekit_server,
):
    async with agent_room(livekit_server, "leave", watcher_cls=Watcher) as r:
        avatar, watcher, agent_room_ = r.avatar, r.watcher, r.agent_room
        await watcher.wait_video(avatar.avatar_identity)
        avatar_p = next(
            p
            for p in watcher.room.remote_participants.values()
            if p.identity == avatar.avatar_identity
        )
        assert avatar_p.attributes.get("lk.publish_on_behalf") == r.agent_id
        # The agent publishes no audio of its own: its speech goes through the avatar.
        agent_p = watcher.room.remote_participants[r.agent_id]
        assert not any(
            t.kind == rtc.TrackKind.KIND_AUDIO for t in agent_p.track_publications.values()
        )

        t0 = time.monotonic()
        await agent_room_.disconnect()  # the agent's job ends abruptly
        # Ask the server itself: other clients hear of departures a second or more late.
        gone_at = await _left_room_at(livekit_server, r.room_name, avatar.avatar_identity)
        assert gone_at is not None, "avatar stayed after the agent left"
        assert gone_at - t0 <= 2.0


@pytest.mark.livekit_server
async def test_the_agent_does_not_receive_its_own_avatars_audio_or_video(livekit_server):
    """The agent's room subscribes to everything by default; decoding its own face
    would cost the agent a video decoder per session, for nothing."""
    async with agent_room(livekit_server, "nomedia", watcher_cls=Watcher) as r:
        await r.watcher.wait_video(r.avatar.avatar_identity)
        await asyncio.wait_for(r.session.say("clicks 1").wait_for_playout(), 15)
        await assert_agent_receives_none_of_its_avatar(r.agent_room, r.avatar.avatar_identity)
        # The user still gets the audio (the video: wait_video above).
        assert "audio" in await inbound_media(r.watcher.room)


@pytest.mark.livekit_server
async def test_aclose_leaves_the_room_and_releases_the_render_thread(livekit_server):
    import threading

    before = {t.name for t in threading.enumerate()}
    async with agent_room(livekit_server, "close", watcher_cls=Watcher) as r:
        avatar, watcher = r.avatar, r.watcher
        await watcher.wait_video(avatar.avatar_identity)
        closed = asyncio.Event()
        avatar.on("avatar_closed", lambda _: closed.set())
        t0 = time.monotonic()
        await avatar.aclose()
        assert closed.is_set()
        gone_at = await _left_room_at(livekit_server, r.room_name, avatar.avatar_identity)
        assert gone_at is not None and gone_at - t0 <= 2.0
        await asyncio.sleep(0.2)
        leftover = {
            t.name for t in threading.enumerate() if t.name.startswith("avatar-render")
        } - before
        assert not leftover, f"render threads still alive: {leftover}"
        await avatar.aclose()  # idempotent


@pytest.mark.livekit_server
async def test_the_avatar_token_is_refused_anything_beyond_its_job(livekit_server):
    import aiohttp

    room_name = f"priv-{uuid.uuid4().hex[:8]}"
    avatar = AvatarSession(max_duration_s=120)
    token = avatar._transport._mint_token(
        room_name, "agent-x", livekit_server.api_key, livekit_server.api_secret
    )
    room = rtc.Room()
    await room.connect(livekit_server.url, token)
    try:
        # Allowed: the camera track the avatar exists to publish.
        cam = rtc.LocalVideoTrack.create_video_track("cam", rtc.VideoSource(64, 64))
        await room.local_participant.publish_track(
            cam, rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_CAMERA)
        )
        # Refused: any other source. The server ignores the request, the SDK gives up...
        screen = rtc.LocalVideoTrack.create_video_track("screen", rtc.VideoSource(64, 64))
        with pytest.raises(PublishTrackError):
            await room.local_participant.publish_track(
                screen, rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_SCREENSHARE)
            )
        # ...and the server's own record shows the camera only.
        from .av_harness import track_streams

        assert sorted(await track_streams(livekit_server, room_name, avatar.avatar_identity)) == [
            "cam"
        ]
        # Refused: room administration through the server API.
        async with aiohttp.ClientSession() as http:
            resp = await http.post(
                f"{livekit_server.http_url}/twirp/livekit.RoomService/ListParticipants",
                json={"room": room_name},
                headers={"Authorization": f"Bearer {token}"},
            )
            assert resp.status in (401, 403), await resp.text()
    finally:
        await room.disconnect()


@pytest.mark.livekit_server
async def test_false_interruption_resume_is_turned_off_with_an_avatar(livekit_server):
    async with agent_room(livekit_server, "resume", watcher_cls=Watcher) as r:
        interruption = r.session.options.turn_handling["interruption"]
        assert interruption["resume_false_interruption"] is False


async def _say_clicks_and_count(r, seconds: float) -> int:
    """Say ``clicks <seconds>``; assert the user heard every click."""
    from .fakes import click_times

    await r.watcher.wait_video(r.avatar.avatar_identity)
    # The user joined after the avatar: speech started before their subscription is in
    # place loses its first click (as a real late joiner misses the first words).
    await wait_until(
        lambda: r.avatar.avatar_identity in r.watcher.audio_track_at, 10.0, "audio subscribed"
    )
    t0 = time.monotonic()
    await asyncio.wait_for(r.session.say(f"clicks {seconds:g}").wait_for_playout(), 20)
    sent = len(click_times(seconds))

    def heard() -> list[float]:
        return [t for t in r.watcher.click_onsets(r.avatar.avatar_identity) if t >= t0]

    # The last click may still be in the user's jitter buffer when playout is reported.
    with contextlib.suppress(AssertionError):
        await wait_until(lambda: len(heard()) >= sent, 5.0, "every click")
    assert len(heard()) == sent
    return sent


@pytest.mark.livekit_server
async def test_the_agent_sends_its_speech_to_the_avatar_as_opus(livekit_server):
    """Raw PCM over the data channel cost ~0.5 core per reply burst at 4 avatars; the
    avatar advertises Opus and the agent sends it, and every click is still heard."""
    async with agent_room(livekit_server, "opus") as r:
        await _say_clicks_and_count(r, 2.0)
        output = r.avatar._failover._active
        assert output._opus_segments >= 1


@pytest.mark.livekit_server
async def test_a_long_reply_is_sent_no_further_ahead_than_the_avatar_needs(livekit_server):
    """TTS hands the whole reply over at once; the agent sends it to the avatar at most
    SEND_AHEAD_S ahead of real time (a burst per reply cost the machine's spare CPU), and
    the avatar still plays every click."""
    from livekit_avatar_plugin._speech_stream import SEND_AHEAD_S

    async with agent_room(livekit_server, "pace") as r:
        await r.watcher.wait_video(r.avatar.avatar_identity)
        output = r.avatar._failover._active
        sent: list[tuple[float, float]] = []  # (time, seconds of speech sent so far)

        async def watch() -> None:
            while True:
                if output._pushed_duration > 0:
                    sent.append((time.monotonic(), output._pushed_duration))
                await asyncio.sleep(0.01)

        watcher = asyncio.create_task(watch())
        try:
            await _say_clicks_and_count(r, 6.0)
        finally:
            watcher.cancel()
        first = sent[0][0]
        ahead = max(pushed - (t - first) for t, pushed in sent)
        took = next(t for t, pushed in sent if pushed >= 5.9) - first
        print(f"\nat most {ahead:.2f} s ahead of real time; 6 s reply sent over {took:.1f} s")
        # One TTS frame (~0.2 s) may go out past the limit, plus the watcher's polling.
        assert ahead <= SEND_AHEAD_S + 0.3
        assert took >= 6.0 - SEND_AHEAD_S - 0.5


@pytest.mark.livekit_server
async def test_an_avatar_that_does_not_read_opus_gets_plain_pcm(livekit_server, monkeypatch):
    """An avatar without the codec attribute (another LiveKit avatar, or one without
    libopus) is sent LiveKit's plain PCM, and plays it."""
    import livekit_avatar_plugin._transport.participant as session_module

    monkeypatch.setattr(session_module, "codec_attributes", lambda: {})
    async with agent_room(livekit_server, "pcm") as r:
        await _say_clicks_and_count(r, 2.0)
        assert r.avatar._failover._active._opus_segments == 0
