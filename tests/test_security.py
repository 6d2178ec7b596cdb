"""Security: the avatar's credentials are least-privilege and secrets never leak.

(test_session.py already decodes the token's grants and shows a screen-share publish and
a ListParticipants call refused; here: the rest of what the token must not do, its
lifetime, the crash reaper's own token, and a full session searched for secrets.)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
import uuid
from pathlib import Path

import aiohttp
import jwt
import pytest
from livekit import api, rtc

from livekit_avatar_plugin import AvatarSession
from livekit_avatar_plugin import _reaper as reaper
from livekit_avatar_plugin.local_server import LocalLiveKitServer

from .av_harness import make_token
from .rooms import agent_room

pytestmark = pytest.mark.livekit_server


@pytest.mark.parametrize("max_duration_s", [60, 3600, 86400])
def test_the_avatar_token_lives_no_longer_than_the_session_may(max_duration_s):
    avatar = AvatarSession(max_duration_s=max_duration_s)
    token = avatar._transport._mint_token("room", "agent", "key", "s" * 40)
    claims = jwt.decode(token, "s" * 40, algorithms=["HS256"])  # signed with the secret
    assert claims["exp"] - claims["nbf"] <= max_duration_s
    assert claims["exp"] - time.time() <= max_duration_s + 5
    video = claims["video"]
    # Data publishing stays on: LiveKit's RPC (playback events) and byte streams are data
    # packets. Everything beyond the avatar's job is off or absent.
    assert video["canPublishData"] is True
    assert video["canSubscribe"] is False and video.get("canUpdateOwnMetadata") is False
    assert sorted(video["canPublishSources"]) == ["camera", "microphone"]
    assert {k for k, v in video.items() if v is True} == {"roomJoin", "canPublish", "canPublishData"}
    assert claims.get("kind", "standard") != "agent"  # not dispatched work, not an agent


async def _refused(info, token: str, service: str, method: str, body: dict) -> int:
    async with aiohttp.ClientSession() as http:
        resp = await http.post(
            f"{info.http_url}/twirp/livekit.{service}/{method}",
            json=body,
            headers={"Authorization": f"Bearer {token}"},
        )
        return resp.status


async def test_the_avatar_token_cannot_administer_subscribe_or_rename(livekit_server):
    info = livekit_server
    room_name = f"sec-{uuid.uuid4().hex[:8]}"
    avatar = AvatarSession(max_duration_s=120)
    token = avatar._transport._mint_token(room_name, "agent-x", info.api_key, info.api_secret)
    user = rtc.Room()
    await user.connect(info.url, make_token(info, room_name, "user-sec"))
    room = rtc.Room()
    subscribed: list = []
    room.on("track_subscribed", lambda *a: subscribed.append(a))
    await room.connect(info.url, token)
    try:
        # Room administration through the server API, with the avatar's own token.
        for service, method, body in [
            ("RoomService", "RemoveParticipant", {"room": room_name, "identity": "user-sec"}),
            ("RoomService", "DeleteRoom", {"room": room_name}),
            ("RoomService", "MutePublishedTrack", {"room": room_name, "identity": "user-sec"}),
            ("RoomService", "UpdateParticipant", {"room": room_name, "identity": "user-sec",
                                                  "metadata": "pwned"}),
            ("RoomService", "CreateRoom", {"name": "other-room"}),
            ("RoomService", "ListRooms", {}),
            ("Egress", "StartRoomCompositeEgress", {"room_name": room_name}),
        ]:
            status = await _refused(info, token, service, method, body)
            assert status in (401, 403), f"{method} answered {status}"
        # No subscribing: the user's microphone never reaches the avatar.
        mic = rtc.LocalAudioTrack.create_audio_track("mic", rtc.AudioSource(48000, 1))
        await user.local_participant.publish_track(
            mic, rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE)
        )
        await asyncio.sleep(1.5)
        assert subscribed == []
        # No changing its own metadata or attributes (lk.publish_on_behalf stays true):
        # the server ignores the requests (the SDK does not report it), so ask the server.
        for change in (
            room.local_participant.set_attributes({"lk.publish_on_behalf": "user-sec"}),
            room.local_participant.set_metadata("pwned"),
        ):
            with contextlib.suppress(Exception):  # refused outright is fine too
                await asyncio.wait_for(change, 5)
        await asyncio.sleep(1.0)
        async with api.LiveKitAPI(info.http_url, info.api_key, info.api_secret) as lk:
            p = await lk.room.get_participant(
                api.RoomParticipantIdentity(room=room_name, identity=avatar.avatar_identity)
            )
        assert p.attributes["lk.publish_on_behalf"] == "agent-x" and p.metadata == ""
        # And the user is still there: nothing above took effect.
        assert "user-sec" in {q.identity for q in room.remote_participants.values()}
    finally:
        await room.disconnect()
        await user.disconnect()


def test_the_crash_reapers_token_is_scoped_to_one_room_for_a_minute():
    token = reaper._admin_token("key", "s" * 40, "room-7")
    claims = jwt.decode(token, "s" * 40, algorithms=["HS256"])
    assert {k: v for k, v in claims["video"].items() if v} == {"roomAdmin": True, "room": "room-7"}
    assert claims["exp"] - claims["nbf"] <= 60


FAKE_SECRET = "lk-SECRET-" + uuid.uuid4().hex + "-DO-NOT-LEAK"
FAKE_OPENAI_KEY = "sk-proj-FAKE-" + uuid.uuid4().hex


@pytest.fixture
def secret_server():
    server = LocalLiveKitServer(api_key="leaktestkey", api_secret=FAKE_SECRET)
    server.start()
    try:
        yield server
    finally:
        server.stop(kill=True)


class _Everything(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.lines.append(self.format(record))
        except Exception:  # noqa: BLE001 - a record that cannot format is still searched
            self.lines.append(repr(record.__dict__))


async def test_secrets_never_reach_logs_attributes_metadata_or_process_lists(
    secret_server, monkeypatch
):
    info = secret_server.info
    monkeypatch.setenv("OPENAI_API_KEY", FAKE_OPENAI_KEY)
    monkeypatch.setenv("LIVEKIT_API_SECRET", FAKE_SECRET)
    handler = _Everything()
    handler.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s %(args)s"))
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    loggers = [logging.getLogger(n) for n in list(logging.root.manager.loggerDict)]
    old_levels = [(lg, lg.level) for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.DEBUG)
    seen: list[str] = []
    try:
        async with agent_room(info, "leak") as r:
            await r.watcher.wait_video(r.avatar.avatar_identity)
            await asyncio.wait_for(r.session.say("clicks 1").wait_for_playout(), 10)
            await asyncio.sleep(0.5)
            room = r.watcher.room
            seen.append(room.metadata or "")
            for p in [*room.remote_participants.values(), room.local_participant]:
                seen += [p.identity, p.name, p.metadata, repr(dict(p.attributes))]
            async with api.LiveKitAPI(info.http_url, info.api_key, info.api_secret) as lk:
                resp = await lk.room.list_participants(
                    api.ListParticipantsRequest(room=r.room_name)
                )
                rooms = await lk.room.list_rooms(api.ListRoomsRequest())
            seen += [str(p) for p in resp.participants] + [str(x) for x in rooms.rooms]
            # Child processes (the crash reaper): their command lines are world-readable.
            for child in Path(f"/proc/{os.getpid()}/task").parent.parent.glob("[0-9]*"):
                try:
                    if (child / "stat").read_text().split()[3] == str(os.getpid()):
                        seen.append((child / "cmdline").read_bytes().decode(errors="replace"))
                except OSError:
                    continue
            server_pid = secret_server.pid
            seen.append(Path(f"/proc/{server_pid}/cmdline").read_bytes().decode(errors="replace"))
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
        for lg, level in old_levels:
            lg.setLevel(level)
    # The capture did see the session, from LiveKit's SDK down to the plugin.
    assert any(line.startswith("livekit ") for line in handler.lines)
    assert any("avatar participant" in line and "joined" in line for line in handler.lines)
    assert any("avatar" in s for s in seen)
    for secret in (FAKE_SECRET, FAKE_OPENAI_KEY):
        assert not [line for line in handler.lines if secret in line], "secret in the logs"
        assert not [s for s in seen if secret in s], "secret visible to participants/ps"
