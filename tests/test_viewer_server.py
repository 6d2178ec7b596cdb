"""The viewer server: loopback only, the page it serves, and what a viewer token allows.

The grants are checked twice: in the signed token, and by the real LiveKit server, which
must let the viewer publish a microphone and chat but refuse a camera.
"""

from __future__ import annotations

import asyncio
import ipaddress
import time

import aiohttp
import jwt
import numpy as np
import pytest
from livekit import api, rtc

from livekit_avatar_plugin.local_server import ServerInfo
from livekit_avatar_plugin.viewer import STATIC_DIR
from livekit_avatar_plugin.viewer.server import ViewerServer

DUMMY = ServerInfo(url="ws://127.0.0.1:9", api_key="devkey", api_secret="secret")


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.10", "example.com", ""])
def test_refuses_to_bind_anything_but_loopback(host):
    with pytest.raises(ValueError, match="not a loopback address"):
        ViewerServer(DUMMY, host=host)


async def test_listens_on_loopback_only_and_serves_the_bundled_page():
    async with ViewerServer(DUMMY, port=0) as server:
        sockets = [s for site in server._runner.sites for s in site._server.sockets]  # type: ignore[union-attr]
        assert sockets, "no listening socket"
        for sock in sockets:
            assert ipaddress.ip_address(sock.getsockname()[0]).is_loopback, sock.getsockname()
        assert server.url.startswith("http://127.0.0.1:")

        async with aiohttp.ClientSession() as http:
            async with http.get(server.url) as resp:
                html = await resp.text()
                csp = resp.headers["Content-Security-Policy"]
            assert resp.status == 200
            assert '<script type="module" src="viewer.js">' in html
            # Nothing comes from elsewhere: no absolute URLs in the page, and the policy
            # allows scripts from this server only and connections to its LiveKit server.
            assert "http://" not in html and "https://" not in html and "//cdn" not in html
            assert "default-src 'self'" in csp and "connect-src 'self' ws://127.0.0.1:9 " in csp
            async with http.get(server.url + "viewer.js") as resp:
                assert resp.status == 200
                assert resp.content_type in ("application/javascript", "text/javascript")
                assert len(await resp.read()) == (STATIC_DIR / "viewer.js").stat().st_size
            async with http.get(server.url + "../pyproject.toml") as resp:
                assert resp.status in (403, 404)


async def test_token_grants_only_what_a_viewer_needs():
    async with ViewerServer(DUMMY, port=0, token_ttl_s=300) as server:
        async with aiohttp.ClientSession() as http:
            async with http.get(server.url + "token", params={"room": "room-1"}) as resp:
                assert resp.status == 200
                assert resp.headers["Cache-Control"] == "no-store"
                body = await resp.json()
            async with http.get(server.url + "token", params={"room": "../admin room"}) as bad:
                assert bad.status == 400
                assert "letters, digits" in (await bad.json())["error"]
            async with http.get(server.url + "token") as resp:
                other = await resp.json()

    assert body["url"] == DUMMY.url and body["room"] == "room-1"
    assert body["identity"].startswith("viewer-")
    assert other["room"].startswith("demo-") and other["identity"] != body["identity"]

    claims = api.TokenVerifier(DUMMY.api_key, DUMMY.api_secret).verify(body["token"])
    raw = jwt.decode(body["token"], options={"verify_signature": False})
    assert 0 < raw["exp"] - time.time() <= 300
    assert claims.identity == body["identity"]
    assert claims.kind in ("", "standard")
    video = claims.video
    assert video is not None
    assert video.room_join is True and video.room == "room-1"
    assert video.can_subscribe is True
    assert video.can_publish is True and video.can_publish_sources == ["microphone"]
    assert video.can_publish_data is True
    assert not video.can_update_own_metadata
    for power in ("room_admin", "room_create", "room_list", "room_record", "ingress_admin",
                  "agent", "hidden", "recorder", "destination_room"):
        assert not getattr(video, power), f"viewer token grants {power}"
    assert set(raw) <= {"sub", "iss", "nbf", "exp", "name", "video", "jti", "kind"}, raw.keys()


@pytest.mark.livekit_server
async def test_livekit_enforces_the_viewer_grants(livekit_server):
    """The real server lets a viewer send chat and publish a microphone, but not a camera."""
    async with ViewerServer(livekit_server, port=0) as server:
        async with aiohttp.ClientSession() as http:
            async with http.get(server.url + "token", params={"room": "viewer-grants"}) as resp:
                viewer = await resp.json()
    other = rtc.Room()
    await other.connect(
        livekit_server.url,
        api.AccessToken(livekit_server.api_key, livekit_server.api_secret)
        .with_identity("peer")
        .with_grants(api.VideoGrants(room_join=True, room="viewer-grants"))
        .to_jwt(),
    )
    chat: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    def on_chat(reader: rtc.TextStreamReader, identity: str) -> None:
        async def read() -> None:
            chat.set_result(f"{identity}: {await reader.read_all()}")

        asyncio.ensure_future(read())

    other.register_text_stream_handler("lk.chat", on_chat)
    room = rtc.Room()
    try:
        await room.connect(viewer["url"], viewer["token"])
        perms = room.local_participant.permissions
        assert perms.can_subscribe and perms.can_publish_data
        assert list(perms.can_publish_sources) == [rtc.TrackSource.SOURCE_MICROPHONE]

        await room.local_participant.send_text("hello", topic="lk.chat")
        assert await asyncio.wait_for(chat, 10) == f"{viewer['identity']}: hello"

        mic = rtc.LocalAudioTrack.create_audio_track("mic", rtc.AudioSource(48000, 1))
        await room.local_participant.publish_track(
            mic, rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE)
        )
        source = rtc.VideoSource(64, 64)
        cam = rtc.LocalVideoTrack.create_video_track("cam", source)
        source.capture_frame(
            rtc.VideoFrame(64, 64, rtc.VideoBufferType.RGBA, np.zeros(64 * 64 * 4, np.uint8).tobytes())
        )
        with pytest.raises(Exception) as refused:  # noqa: B017 - the SDK raises its own error type
            await asyncio.wait_for(
                room.local_participant.publish_track(
                    cam, rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_CAMERA)
                ),
                15,
            )
        assert not isinstance(refused.value, asyncio.TimeoutError), "the server never answered"
        print(f"\ncamera publish refused: {refused.value!r}")
        async with api.LiveKitAPI(
            livekit_server.http_url, livekit_server.api_key, livekit_server.api_secret
        ) as lkapi:
            info = await lkapi.room.get_participant(
                api.RoomParticipantIdentity(room="viewer-grants", identity=viewer["identity"])
            )
        assert [t.source for t in info.tracks] == [api.TrackSource.MICROPHONE]
    finally:
        await room.disconnect()
        await other.disconnect()
