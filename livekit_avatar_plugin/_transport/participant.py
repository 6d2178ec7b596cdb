"""``mode="participant"``: the avatar joins the room as its own participant, publishing
on behalf of the agent (as hosted avatars do), rendered in this process."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
import time

from livekit import api, rtc
from livekit.agents.types import ATTRIBUTE_PUBLISH_ON_BEHALF
from livekit.agents.voice.avatar import DataStreamAudioReceiver
from livekit.agents.voice.io import AudioOutput

from .. import _reaper as reaper
from .._runtime import start_publisher
from .._errors import AvatarSessionError
from .._speech_stream import codec_attributes
from .remote import RemoteTransport

logger = logging.getLogger("livekit_avatar_plugin.session")

_CONNECTION_POLL_S = 0.1
# How long the avatar may spend reconnecting before the agent speaks by itself.
_RECONNECT_GRACE_S = 1.0
# After an outage that took the agent's connection down too (a server restart, the host's
# network), the avatar's SDK is retrying on its own back-off schedule and usually returns
# a moment after the agent: give it this long before speaking without a face.
_RECOVERY_GRACE_S = 6.0
# Playback RPCs ride a reliable channel that a lossy link can delay past their ack
# timeout; LiveKit's receiver dies after its last retry (and the avatar with it).
_RPC_MAX_RETRIES = 1000
# The avatar publishes camera + microphone and talks to the agent over RPC/byte streams;
# it never needs room admin, recording or other participants' media.
_AVATAR_PUBLISH_SOURCES = ["camera", "microphone"]
_JOIN_TIMEOUT_S = 10.0


class ParticipantTransport(RemoteTransport):
    recovers = True
    hands_over = True

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self._avatar_room: rtc.Room | None = None
        self._watch: asyncio.Task[None] | None = None
        self._face_gone = False  # failed over: only the agent's connection is watched
        self._closing = False

    async def start(self, room: rtc.Room, *, started_at: float) -> AudioOutput:
        self._ignore_avatar_media(room)
        generator = await self._build_face()
        try:
            avatar_room = await self._join(room)
            self._publisher = await start_publisher(
                avatar_room,
                generator,
                audio_receiver=DataStreamAudioReceiver(
                    avatar_room,
                    sender_identity=room.local_participant.identity,
                    rpc_max_retries=_RPC_MAX_RETRIES,
                ),
                speech_sender=room.local_participant.identity,
                video=self._options.video,
                video_delay_s=self._options.video_delay_ms / 1000.0,
                started_at=started_at,
                emit_metrics=self._hooks.emit_metrics,
                on_published=self._hooks.on_published,
                on_died=self._died,
            )
        except BaseException:
            await generator.aclose()
            raise
        logger.info(
            "avatar participant %s joined room %s on behalf of %s",
            self.identity, room.name, room.local_participant.identity,
        )  # fmt: skip
        output = self._speech_output(room)
        publisher = self._publisher
        output.reports_sent = lambda: publisher.reports_sent
        return output

    async def _join(self, room: rtc.Room) -> rtc.Room:
        url, key, secret = self._credentials.resolve()
        token = self._mint_token(room.name, room.local_participant.identity, key, secret)
        avatar_room = rtc.Room()
        try:
            await asyncio.wait_for(avatar_room.connect(url, token), timeout=_JOIN_TIMEOUT_S)
        except Exception as exc:
            raise AvatarSessionError(f"avatar participant could not join {url}: {exc!r}") from exc
        self._avatar_room = avatar_room
        # If this process is killed, nothing here can take the avatar out of the room.
        http_url = url.replace("ws://", "http://", 1).replace("wss://", "https://", 1)
        await asyncio.to_thread(reaper.watch, http_url, key, secret, room.name, self.identity)
        avatar_room.on("participant_disconnected", self._on_participant_left)
        avatar_room.on("disconnected", self._on_disconnected)
        self._watch = asyncio.create_task(
            self._watch_connections(room, avatar_room), name="avatar-connection-watch"
        )
        return avatar_room

    def _mint_token(self, room_name: str, agent_identity: str, key: str, secret: str) -> str:
        grants = api.VideoGrants(
            room_join=True,
            room=room_name,
            can_publish=True,
            can_publish_sources=list(_AVATAR_PUBLISH_SOURCES),
            can_publish_data=True,
            can_subscribe=False,
            can_update_own_metadata=False,
        )
        return (
            api.AccessToken(key, secret)
            .with_identity(self.identity)
            .with_name(self._options.avatar_name)
            .with_grants(grants)
            .with_attributes({ATTRIBUTE_PUBLISH_ON_BEHALF: agent_identity, **codec_attributes()})
            .with_ttl(datetime.timedelta(seconds=self._options.max_duration_s))
            .to_jwt()
        )

    def connected(self) -> bool:
        rooms = (self._agent_room, self._avatar_room)
        return all(r is not None and r.connection_state == rtc.ConnectionState.CONN_CONNECTED for r in rooms)

    def _died(self, why: str) -> None:
        if not (self._closing or self._face_gone):
            self._hooks.on_died(why)

    def _on_disconnected(self, *_: object) -> None:
        self._died("avatar participant disconnected")

    def _on_participant_left(self, participant: rtc.RemoteParticipant) -> None:
        agent_room = self._agent_room
        if agent_room is None or participant.identity != agent_room.local_participant.identity:
            return
        # While either side reconnects, the SDK drops every remote participant (a full
        # reconnect after a server restart) or the server swaps the agent's old session for
        # its new one: the agent has not left. Its own room, in this process, says whether
        # it has; the connection watch acts on that within 0.1 s.
        if self._avatar_room is not None and (
            self._avatar_room.connection_state != rtc.ConnectionState.CONN_CONNECTED
        ):
            return
        if agent_room.connection_state != rtc.ConnectionState.CONN_DISCONNECTED:
            return
        self._hooks.on_agent_left("agent left the room")

    async def _watch_connections(self, agent_room: rtc.Room, avatar_room: rtc.Room) -> None:
        """Notice a lost agent or avatar connection within a fraction of a second.

        The rooms' "disconnected" events are not always emitted (a local disconnect, a
        killed process's socket), and the fallbacks are slow: the server tells the other
        participants about a departure seconds late, and the receiver's RPC retries took
        nearly 3 s to give up. A short avatar reconnect is tolerated; a longer one counts
        as death.

        A reconnect of the agent's own room (a server restart, the host's network) is an
        outage for both: nobody hears the agent either way, so it neither ends the session
        nor fails over. Both SDKs rejoin and republish by themselves; the avatar gets
        ``_RECOVERY_GRACE_S`` after the agent is back to follow it.
        """
        reconnecting_since: float | None = None
        agent_back_at: float | None = None
        agent_was_down = False
        while not self._closing:
            await asyncio.sleep(_CONNECTION_POLL_S)
            now = time.monotonic()
            agent_state = agent_room.connection_state
            if agent_state == rtc.ConnectionState.CONN_DISCONNECTED:
                self._hooks.on_agent_left("agent room disconnected")
                return
            if agent_state == rtc.ConnectionState.CONN_RECONNECTING:
                if not agent_was_down:
                    logger.warning("the agent's connection is reconnecting; the avatar waits")
                agent_was_down, reconnecting_since = True, None
                continue
            if agent_was_down:
                agent_was_down, agent_back_at = False, now
                logger.info("the agent's connection is back")
            if self._face_gone:
                continue  # the agent already speaks by itself; keep watching the agent
            state = avatar_room.connection_state
            if state == rtc.ConnectionState.CONN_DISCONNECTED:
                self._died("avatar participant disconnected")
            elif state == rtc.ConnectionState.CONN_RECONNECTING:
                reconnecting_since = reconnecting_since or now
                recovering = agent_back_at is not None and now - agent_back_at < _RECOVERY_GRACE_S
                grace = _RECOVERY_GRACE_S if recovering else _RECONNECT_GRACE_S
                start = max(reconnecting_since, agent_back_at or 0.0)
                if now - start >= grace:
                    self._died("avatar connection lost (still reconnecting)")
            else:
                if reconnecting_since is not None:
                    logger.info("avatar connection back after %.1f s", now - reconnecting_since)
                reconnecting_since = None

    async def stop_face(self, reason: str) -> None:
        self._face_gone = True
        await super().stop_face(reason)

    async def restart(self, room: rtc.Room) -> AudioOutput:
        """Join again under the same identity (the server drops a stale connection of it)
        with a new face. Until that succeeds the old watch keeps following the agent."""
        await self._leave_avatar_room()
        old_watch = self._watch
        try:
            output = await self.start(room, started_at=time.monotonic())
        except BaseException:
            if self._watch is not old_watch and self._watch is not None:
                self._watch.cancel()
            self._watch = old_watch
            await self._leave_avatar_room()
            raise
        if old_watch is not None:
            old_watch.cancel()
        self._face_gone = False
        return output

    async def aclose(self, reason: str) -> None:
        self._closing = True
        watch, self._watch = self._watch, None
        if watch is not None and watch is not asyncio.current_task():
            watch.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await watch
        await super().aclose(reason)
        await self._leave_avatar_room()

    async def _leave_avatar_room(self) -> None:
        room, self._avatar_room = self._avatar_room, None
        if room is not None:
            room.off("disconnected", self._on_disconnected)
            room.off("participant_disconnected", self._on_participant_left)
            with contextlib.suppress(Exception):
                await room.disconnect()
            if self._agent_room is not None:
                reaper.forget(self._agent_room.name, self.identity)
