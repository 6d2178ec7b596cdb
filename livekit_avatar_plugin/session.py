"""``AvatarSession``: the plugin's entry point, in the shape of LiveKit's avatar plugins.

    avatar = AvatarSession(avatar="default")
    await avatar.start(session, room=ctx.room)   # before session.start()
    await session.start(agent, room=ctx.room)

By default the avatar joins the room as its own participant (``mode="participant"``),
publishing on behalf of the agent, exactly like a hosted avatar, but rendered in this
process with local ONNX models. ``mode="in_process"`` publishes the avatar's tracks
from the agent's own participant instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal

from livekit import api, rtc
from livekit.agents.types import ATTRIBUTE_PUBLISH_ON_BEHALF
from livekit.agents.voice.io import AudioOutput, AudioOutputCapabilities
from livekit.agents.voice.avatar import (
    AvatarSession as _LiveKitAvatarSession,
    DataStreamAudioReceiver,
    QueueAudioOutput,
)

from . import reaper
from .config import AvatarSessionOptions
from .dispatch.client import AvatarDispatchError, DispatchedAvatar
from .dispatch.protocol import AvatarJobRequest
from .errors import AvatarError
from .failover import FailoverAudioOutput
from .generator import AvatarVideoGenerator
from .lifecycle import AvatarClosedEvent, CloseReason, SessionWatchdog
from .metrics import MetricsRecorder
from .participant import AvatarPublisher
from .pipeline import FacePipeline, build_generator, load_pipeline
from .speech_stream import SpeechStreamOutput, codec_attributes
from .state import ConversationState, state_between_speech
from .turns import Protection, TurnController

if TYPE_CHECKING:
    from livekit.agents import AgentSession

    from .face.avatar import Avatar

logger = logging.getLogger("livekit_avatar_plugin.session")

PROVIDER = "livekit-avatar-plugin"
_CONNECTION_POLL_S = 0.1
# How long the avatar may spend reconnecting before the agent speaks by itself.
_RECONNECT_GRACE_S = 1.0
# After an outage that took the agent's connection down too (a server restart, the host's
# network), the avatar's SDK is retrying on its own back-off schedule and usually returns
# a moment after the agent: give it this long before speaking without a face.
_RECOVERY_GRACE_S = 6.0
_RPC_MAX_RETRIES = 1000
# The avatar publishes camera + microphone and talks to the agent over RPC/byte streams;
# it never needs room admin, recording or other participants' media.
_AVATAR_PUBLISH_SOURCES = ["camera", "microphone"]


class AvatarSessionError(AvatarError, RuntimeError):
    """The avatar could not be started."""


@dataclass(frozen=True)
class AvatarFailedEvent:
    """Emitted as ``avatar_failed`` when the avatar participant dies or cannot join.

    The session goes on: the agent publishes its own audio from then on, starting where
    the user stopped hearing the avatar.
    """

    detail: str


class AvatarSession(
    _LiveKitAvatarSession[
        Literal["avatar_closed", "avatar_failed", "protection_started", "protection_released"]
    ]
):
    """A local, lip-synced avatar for one agent session.

    Args:
        avatar: ``"default"`` (the shipped portrait), a path to an avatar package made by
            ``livekit-avatar create``, or a loaded ``Avatar``.
        face_pipeline: replaces the shipped lip-sync model and renderer with your own
            (anything with ``create_motion()`` and ``create_renderer(width, height)``).
        livekit_url, api_key, api_secret: the server the avatar participant joins; default
            to ``LIVEKIT_URL``, ``LIVEKIT_API_KEY``, ``LIVEKIT_API_SECRET``.
        **options: the fields of :class:`AvatarSessionOptions` (``video``, ``mode``,
            ``avatar_identity``, ``avatar_name``, ``audio_sample_rate``, ``max_duration_s``).
    """

    def __init__(
        self,
        *,
        avatar: str | Path | Avatar = "default",
        face_pipeline: FacePipeline | None = None,
        livekit_url: str | None = None,
        api_key: str | None = None,
        api_secret: str | None = None,
        **options: Any,
    ) -> None:
        super().__init__()
        self.options = AvatarSessionOptions(**options)
        if isinstance(avatar, (str, Path)) and str(avatar) != "default":
            if not Path(avatar).exists():
                raise FileNotFoundError(f"avatar package {avatar} does not exist")
        self._avatar = avatar
        self._face_pipeline = face_pipeline
        self._livekit_url = livekit_url
        self._api_key = api_key
        self._api_secret = api_secret
        self._identity = self.options.avatar_identity or f"avatar-{uuid.uuid4().hex[:12]}"
        self._avatar_room: rtc.Room | None = None
        self._dispatched: DispatchedAvatar | None = None
        self._publisher: AvatarPublisher | None = None
        self._sink: FailoverAudioOutput | QueueAudioOutput | None = None
        self._fallback_outputs: list[Any] = []
        self._background: set[asyncio.Task] = set()  # fail-overs and closes begun by callbacks
        self._failed = False
        self._session_events: list[tuple[str, Any]] = []
        self._agent_room: rtc.Room | None = None
        self._closing = False
        self._watchdog: SessionWatchdog | None = None
        self._connection_watch: asyncio.Task[None] | None = None
        self._metrics: MetricsRecorder | None = None
        self._started_at: float | None = None
        self._close_reason = CloseReason.CLOSED_BY_APP
        self._close_detail = "aclose() called"
        self._publish_taps: list[Callable[[str, float, object], None]] = []
        self._turns: TurnController | None = None

    # -- identity -----------------------------------------------------------------------

    @property
    def avatar_identity(self) -> str:
        if self.options.mode == "in_process" and self._agent_room is not None:
            return self._agent_room.local_participant.identity
        return self._identity

    @property
    def provider(self) -> str:
        return PROVIDER

    @property
    def publisher(self) -> AvatarPublisher | None:
        """The running publisher (for metrics and tests); ``None`` before ``start``."""
        return self._publisher

    # -- turn control -------------------------------------------------------------------

    @property
    def protected(self) -> bool:
        """True while a greeting, tool turn or app flow is shielded from interruption."""
        return self._turns is not None and self._turns.protected

    def protect(self, reason: str = "app") -> Protection:
        """Shield a flow of your own from barge-in: ``async with avatar.protect("booking"):``
        or ``@avatar.protect("booking")`` on a coroutine.

        While it is held, no speech can be interrupted by the user and user turns are not
        answered; what the user says is handled per ``input_during_protection``. It is
        released when the block exits (however it exits), or after
        ``tool_protection.max_hold_s`` with a warning. Call after :meth:`start`.
        """
        if self._turns is None:
            raise AvatarSessionError("call avatar.start(...) before avatar.protect(...)")
        return self._turns.protect(reason)

    async def text_input_cb(self, session: AgentSession, ev: Any) -> None:
        """Pass as ``RoomOptions(text_input=TextInputOptions(text_input_cb=avatar.text_input_cb))``
        so typed messages follow the same protection rules as spoken ones."""
        if self._turns is None:
            raise AvatarSessionError("text input arrived before avatar.start(...)")
        await self._turns.text_input(session, ev)

    async def _wait_on_screen(self) -> None:
        """Return once the face is published. A dispatched avatar already is when start()
        returns (DispatchedAvatar waits for its video); a failed one never will."""
        if self._publisher is not None and not self._failed:
            await self._publisher.wait_published()

    def add_publish_tap(self, tap: Callable[[str, float, object], None]) -> None:
        """Observe every audio slice and video frame as it goes out (kind, time, frame).

        For metrics and measurement; the tap runs on the event loop and must be cheap.
        """
        self._publish_taps.append(tap)

    def _on_published(self, kind: str, t: float, frame: object) -> None:
        for tap in self._publish_taps:
            tap(kind, t, frame)

    # -- lifecycle ----------------------------------------------------------------------

    async def start(self, agent_session: AgentSession, room: rtc.Room) -> None:  # type: ignore[override]
        """Join the room (or attach in-process) and route the agent's speech to the avatar.

        Call it before ``agent_session.start()``: the agent's audio sink is swapped here.
        """
        if not room.isconnected():
            raise AvatarSessionError(
                "the agent's room is not connected; call `await ctx.connect()` before "
                "`avatar.start(...)`"
            )
        self._agent_room = room
        started_at = time.monotonic()
        if self.options.mode != "in_process":
            self._ignore_avatar_media(room)
        await super().start(agent_session, room)
        _disable_false_interruption_resume(agent_session)

        video = self.options.video
        # In dispatch mode the avatar worker renders (and reports frame metrics) itself:
        # this process loads no face models.
        generator = None if self.options.mode == "dispatch" else await self._make_generator()
        if generator is not None:
            self._metrics = MetricsRecorder(
                self._emit_metrics,
                provider=PROVIDER,
                started_at=started_at,
                counters=lambda: (generator.stats.underruns, generator.stats.render_errors),
            )
        if self.options.mode == "in_process":
            sink = QueueAudioOutput(sample_rate=self.options.audio_sample_rate)
            self._sink = sink
            self._publisher = AvatarPublisher(
                room,
                audio_receiver=sink,
                generator=generator,
                video=video,
                video_delay_s=self.options.video_delay_ms / 1000.0,
                on_published=self._on_published,
            )
            self._publisher.attach_metrics(self._metrics)
            await self._publisher.start()
        else:
            try:
                if generator is None:
                    await self._start_dispatch(room)
                else:
                    await self._start_participant(room, generator)
            except AvatarSessionError as exc:
                # No face, but the agent must still be heard: speak from its own participant.
                logger.error("%s; the agent will speak without an avatar", exc)
                self._sink = FailoverAudioOutput(
                    _NullAudioOutput(self.options.audio_sample_rate),
                    sample_rate=self.options.audio_sample_rate,
                    make_fallback=self._make_fallback,
                )
                await self._sink.failover(0.0)
                self._failed = True
                self.emit("avatar_failed", AvatarFailedEvent(detail=str(exc)))

        assert self._sink is not None
        agent_session.output.replace_audio_tail(self._sink)
        self._turns = TurnController(agent_session, self.options, self.emit)
        self._turns.attach(self._wait_on_screen)
        self._watch_agent_session(agent_session)
        room.on("disconnected", self._on_agent_room_disconnected)
        self._watchdog = SessionWatchdog(
            room=room,
            agent_session=agent_session,
            avatar_identity=self.avatar_identity,
            idle_timeout_s=self.options.idle_timeout_s,
            user_absent_timeout_s=self.options.user_absent_timeout_s,
            max_duration_s=self.options.max_duration_s,
            on_expire=self._expire,
        )
        self._started_at = self._watchdog.started_at
        self._watchdog.start()

    def _ignore_avatar_media(self, room: rtc.Room) -> None:
        """Keep the agent's room from receiving its own avatar's audio and video.

        An agent room joined with LiveKit's default (subscribe to everything) would
        otherwise receive and decode the face it never shows: a VP8 decoder, an Opus
        decoder and the server's bandwidth, per session, for nothing. Only the avatar's
        tracks are declined; the user's stay subscribed.

        Declined once subscribed, not when published: unsubscribing a track whose
        subscription is still pending leaves LiveKit's FFI runtime (livekit 1.x) spinning,
        close to a full core for the rest of the session.
        """
        room.on("track_subscribed", self._unsubscribe_avatar_track)
        for participant in room.remote_participants.values():
            for publication in participant.track_publications.values():
                if publication.subscribed and publication.track is not None:
                    self._unsubscribe_avatar_track(publication.track, publication, participant)

    def _unsubscribe_avatar_track(
        self,
        track: rtc.Track,
        publication: rtc.RemoteTrackPublication,
        participant: rtc.RemoteParticipant,
    ) -> None:
        agent_identity = self._agent_room.local_participant.identity if self._agent_room else None
        is_ours = participant.identity == self._identity or (
            agent_identity is not None
            and participant.attributes.get(ATTRIBUTE_PUBLISH_ON_BEHALF) == agent_identity
        )
        if is_ours:
            publication.set_subscribed(False)

    async def _start_participant(self, room: rtc.Room, generator: AvatarVideoGenerator) -> None:
        url, key, secret = self._credentials()
        agent_identity = room.local_participant.identity
        token = self._mint_token(room.name, agent_identity, key, secret)
        avatar_room = rtc.Room()
        self._avatar_room = avatar_room
        try:
            await asyncio.wait_for(avatar_room.connect(url, token), timeout=10.0)
        except Exception as exc:
            self._avatar_room = None
            raise AvatarSessionError(f"avatar participant could not join {url}: {exc!r}") from exc
        # If this process is killed, nothing here can take the avatar out of the room.
        http_url = url.replace("ws://", "http://", 1).replace("wss://", "https://", 1)
        await asyncio.to_thread(reaper.watch, http_url, key, secret, room.name, self._identity)
        avatar_room.on("participant_disconnected", self._on_avatar_room_participant_left)
        avatar_room.on("disconnected", self._on_avatar_room_disconnected)
        self._connection_watch = asyncio.create_task(
            self._watch_connections(room, avatar_room), name="avatar-connection-watch"
        )

        # Playback RPCs ride a reliable channel that a lossy link can delay past their ack
        # timeout; LiveKit's receiver dies after its last retry (and the avatar with it),
        # so keep retrying for as long as the session lasts.
        receiver = DataStreamAudioReceiver(
            avatar_room, sender_identity=agent_identity, rpc_max_retries=_RPC_MAX_RETRIES
        )
        self._publisher = AvatarPublisher(
            avatar_room,
            audio_receiver=receiver,
            generator=generator,
            video=self.options.video,
            video_delay_s=self.options.video_delay_ms / 1000.0,
            on_published=self._on_published,
            on_died=self._on_publisher_died,
        )
        assert self._metrics is not None
        self._publisher.attach_metrics(self._metrics)
        await self._publisher.start()
        self._sink = self._stream_to_avatar(room)
        logger.info(
            "avatar participant %s joined room %s on behalf of %s",
            self._identity,
            room.name,
            agent_identity,
        )

    async def _make_generator(self) -> AvatarVideoGenerator:
        pipeline = self._face_pipeline or await asyncio.to_thread(load_pipeline, self._avatar)
        video = self.options.video
        return await build_generator(
            pipeline, width=video.width, height=video.height, fps=video.fps,
            sample_rate=self.options.audio_sample_rate,
        )  # fmt: skip

    def _stream_to_avatar(self, room: rtc.Room) -> FailoverAudioOutput:
        """The agent's audio sink: a data stream to the avatar, with failover."""
        to_avatar = SpeechStreamOutput(
            room,
            destination_identity=self._identity,
            sample_rate=self.options.audio_sample_rate,
            wait_remote_track=rtc.TrackKind.KIND_VIDEO,
            # The avatar reports when audio really starts playing, which keeps the
            # agent's transcript timing honest.
            wait_playback_start=True,
        )
        if self._dispatched is not None:
            self._dispatched.track_playback(to_avatar)
        return FailoverAudioOutput(
            to_avatar, sample_rate=self.options.audio_sample_rate, make_fallback=self._make_fallback
        )

    async def _start_dispatch(self, room: rtc.Room) -> None:
        """Have LiveKit dispatch the avatar to a ``livekit-avatar worker`` (see dispatch/)."""
        url, key, secret = self._credentials()
        request = AvatarJobRequest(
            agent_identity=room.local_participant.identity,
            avatar_identity=self._identity,
            avatar_name=self.options.avatar_name,
            avatar=str(self._avatar) if isinstance(self._avatar, (str, Path)) else "default",
            video=self.options.video,
            audio_sample_rate=self.options.audio_sample_rate,
            video_delay_ms=self.options.video_delay_ms,
            max_duration_s=self.options.max_duration_s,
        )
        dispatched = DispatchedAvatar(
            room,
            request,
            agent_name=self.options.agent_name,
            url=url,
            api_key=key,
            api_secret=secret,
            timeout_s=self.options.dispatch_timeout_s,
        )
        try:
            await dispatched.start(
                on_left=self._on_publisher_died,
                on_agent_gone=lambda: self._close_soon(
                    CloseReason.AGENT_LEFT, "agent room disconnected"
                ),
            )
        except AvatarDispatchError as exc:
            raise AvatarSessionError(str(exc)) from exc
        self._dispatched = dispatched
        self._identity = dispatched.identity  # a retried dispatch joins under a new one
        self._sink = self._stream_to_avatar(room)

    def _credentials(self) -> tuple[str, str, str]:
        url = self._livekit_url or os.environ.get("LIVEKIT_URL")
        key = self._api_key or os.environ.get("LIVEKIT_API_KEY")
        secret = self._api_secret or os.environ.get("LIVEKIT_API_SECRET")
        missing = [
            name
            for name, value in (
                ("LIVEKIT_URL", url),
                ("LIVEKIT_API_KEY", key),
                ("LIVEKIT_API_SECRET", secret),
            )
            if not value
        ]
        if missing:
            raise AvatarSessionError(
                "the avatar participant needs server credentials: set "
                + ", ".join(missing)
                + " or pass livekit_url/api_key/api_secret (or use mode='in_process')"
            )
        return url, key, secret  # type: ignore[return-value]

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
            .with_identity(self._identity)
            .with_name(self.options.avatar_name)
            .with_grants(grants)
            .with_attributes({ATTRIBUTE_PUBLISH_ON_BEHALF: agent_identity, **codec_attributes()})
            .with_ttl(datetime.timedelta(seconds=self.options.max_duration_s))
            .to_jwt()
        )

    # -- conversation state -------------------------------------------------------------

    def _watch_agent_session(self, agent_session: AgentSession) -> None:
        def on_user_state(ev: Any) -> None:
            self._set_state_from(user=ev.new_state)

        def on_agent_state(ev: Any) -> None:
            self._set_state_from(agent=ev.new_state)

        agent_session.on("user_state_changed", on_user_state)
        agent_session.on("agent_state_changed", on_agent_state)
        self._session_events = [
            ("user_state_changed", on_user_state),
            ("agent_state_changed", on_agent_state),
        ]

    def _set_state_from(self, *, user: str | None = None, agent: str | None = None) -> None:
        if self._publisher is None:
            return
        gen = self._publisher.generator
        if user == "speaking" or agent == "thinking":
            gen.set_state(state_between_speech(user_speaking=user == "speaking", agent=agent))
        elif user in ("listening", "away") or agent in ("listening", "idle", "speaking"):
            gen.set_state(ConversationState.IDLE)

    # -- timeouts and teardown ----------------------------------------------------------

    async def _expire(self, reason: CloseReason, detail: str) -> None:
        """A timeout fired: say goodbye if configured, then close the whole session."""
        if self._closing:
            return
        self._close_reason, self._close_detail = reason, detail
        logger.warning("avatar session timed out (%s): %s", reason.value, detail)
        session = self._agent_session
        if self.options.goodbye and session is not None:
            try:
                goodbye = self.options.goodbye
                say = lambda: session.say(goodbye, allow_interruptions=False)  # noqa: E731
                handle = self._turns.own_speech(say) if self._turns else say()
                await asyncio.wait_for(handle.wait_for_playout(), timeout=15.0)
            except Exception:  # noqa: BLE001 - leaving matters more than the goodbye
                logger.warning("goodbye line could not be played", exc_info=True)
        if session is not None:
            with contextlib.suppress(Exception):
                await session.aclose()
        await self.aclose()

    # -- teardown -----------------------------------------------------------------------

    def _on_agent_room_disconnected(self, *_: Any) -> None:
        self._close_soon(CloseReason.AGENT_LEFT, "agent room disconnected")

    def _on_avatar_room_participant_left(self, participant: rtc.RemoteParticipant) -> None:
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
        self._close_soon(CloseReason.AGENT_LEFT, "agent left the room")

    def _on_avatar_room_disconnected(self, *_: Any) -> None:
        if self._closing:
            return
        self._spawn(self._fail_over("avatar participant disconnected"))

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
                self._close_soon(CloseReason.AGENT_LEFT, "agent room disconnected")
                return
            if agent_state == rtc.ConnectionState.CONN_RECONNECTING:
                if not agent_was_down:
                    logger.warning("the agent's connection is reconnecting; the avatar waits")
                agent_was_down, reconnecting_since = True, None
                continue
            if agent_was_down:
                agent_was_down, agent_back_at = False, now
                logger.info("the agent's connection is back")
            if self._failed:
                continue  # the agent already speaks by itself; keep watching the agent
            state = avatar_room.connection_state
            if state == rtc.ConnectionState.CONN_DISCONNECTED:
                await self._fail_over("avatar participant disconnected")
            elif state == rtc.ConnectionState.CONN_RECONNECTING:
                reconnecting_since = reconnecting_since or now
                recovering = agent_back_at is not None and now - agent_back_at < _RECOVERY_GRACE_S
                grace = _RECOVERY_GRACE_S if recovering else _RECONNECT_GRACE_S
                start = max(reconnecting_since, agent_back_at or 0.0)
                if now - start >= grace:
                    await self._fail_over("avatar connection lost (still reconnecting)")
            else:
                if reconnecting_since is not None:
                    logger.info(
                        "avatar connection back after %.1f s", now - reconnecting_since
                    )
                reconnecting_since = None

    def _on_publisher_died(self, why: str) -> None:
        if not self._closing:
            self._spawn(self._fail_over(why))

    async def _make_fallback(self) -> Any:
        """The agent's own audio track, as LiveKit's RoomIO would have published it."""
        from livekit.agents.voice.room_io._output import _ParticipantAudioOutput

        assert self._agent_room is not None
        output = _ParticipantAudioOutput(
            self._agent_room,
            sample_rate=self.options.audio_sample_rate,
            num_channels=1,
            track_publish_options=rtc.TrackPublishOptions(
                source=rtc.TrackSource.SOURCE_MICROPHONE
            ),
            track_name="agent_audio",
        )
        # start() returns once someone subscribes; audio waits for that, as with RoomIO.
        task = asyncio.ensure_future(output.start())
        self._fallback_outputs.append((output, task))
        return output

    async def _fail_over(self, detail: str) -> None:
        """The avatar died mid-session: keep the conversation going without a face."""
        if self._failed or self._closing or not isinstance(self._sink, FailoverAudioOutput):
            return
        self._failed = True
        heard = self._publisher.heard_position() if self._publisher is not None else 0.0
        if self._dispatched is not None:
            heard = self._dispatched.heard_position()
        if self._publisher is not None:
            publisher, self._publisher = self._publisher, None
            await publisher.aclose()
        await self._sink.failover(heard)
        logger.error("avatar failed (%s); the agent continues with audio only", detail)
        self.emit("avatar_failed", AvatarFailedEvent(detail=detail))

    def _close_soon(self, reason: CloseReason, detail: str) -> None:
        if self._closing:
            return
        self._close_reason, self._close_detail = reason, detail
        logger.info("closing avatar session (%s): %s", reason.value, detail)
        self._spawn(self.aclose())

    def _spawn(self, coro: Any) -> None:
        """Run ``coro`` from a callback, keeping the task until it ends (a task nobody
        holds can be collected mid-run) and logging what it raised."""
        task = asyncio.ensure_future(coro)
        self._background.add(task)

        def done(t: asyncio.Task) -> None:
            self._background.discard(t)
            if not t.cancelled() and t.exception() is not None:
                logger.error("avatar session task failed", exc_info=t.exception())

        task.add_done_callback(done)

    async def aclose(self) -> None:
        """Stop rendering, leave the room and release threads and buffers. Idempotent."""
        if self._closing:
            return
        self._closing = True
        if self._watchdog is not None:
            self._watchdog.stop()
        if self._turns is not None:
            await self._turns.aclose()
        current = asyncio.current_task()
        if self._connection_watch is not None and self._connection_watch is not current:
            self._connection_watch.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._connection_watch
        if self._agent_room is not None:
            self._agent_room.off("disconnected", self._on_agent_room_disconnected)
            self._agent_room.off("track_subscribed", self._unsubscribe_avatar_track)
        if self._agent_session is not None:
            for name, handler in self._session_events:
                with contextlib.suppress(Exception):
                    self._agent_session.off(name, handler)
        if self._metrics is not None and self._agent_session is not None:
            with contextlib.suppress(Exception):
                self._metrics.closed(self._close_reason.value)
        if self._publisher is not None:
            await self._publisher.aclose()
        for output, task in self._fallback_outputs:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
            with contextlib.suppress(Exception):
                await output.aclose()
        for task in [t for t in self._background if t is not current]:
            task.cancel()  # a fail-over under way: the session is going anyway
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._avatar_room is not None:
            self._avatar_room.off("disconnected", self._on_avatar_room_disconnected)
            self._avatar_room.off("participant_disconnected", self._on_avatar_room_participant_left)
            with contextlib.suppress(Exception):
                await self._avatar_room.disconnect()
            if self._agent_room is not None:
                reaper.forget(self._agent_room.name, self._identity)
        if self._dispatched is not None:
            await self._dispatched.aclose()
        if self.options.mode in ("participant", "dispatch"):
            # LiveKit's base class removes the participant through the server API when
            # running inside a job; outside one we have already disconnected it above.
            with contextlib.suppress(Exception):
                await super().aclose()
        else:
            self._agent_session = None
        duration = time.monotonic() - self._started_at if self._started_at else 0.0
        logger.info(
            "avatar session closed: %s (%s) after %.1f s",
            self._close_reason.value,
            self._close_detail,
            duration,
        )
        self.emit(
            "avatar_closed",
            AvatarClosedEvent(
                reason=self._close_reason, detail=self._close_detail, duration_s=duration
            ),
        )


def _disable_false_interruption_resume(agent_session: AgentSession) -> None:
    """An avatar cannot pause, so a "false" interruption can never be resumed.

    LiveKit would ignore the option with a warning on every session; turn it off once,
    visibly, so the session's behaviour matches its configuration.
    """
    interruption = agent_session.options.turn_handling["interruption"]
    if interruption.get("resume_false_interruption"):
        interruption["resume_false_interruption"] = False
        logger.info(
            "resume_false_interruption turned off: an avatar cannot pause its speech"
        )


class _NullAudioOutput(AudioOutput):
    """Stands in for an avatar that never joined, until the failover replaces it."""

    def __init__(self, sample_rate: int) -> None:
        super().__init__(
            label="NoAvatar",
            capabilities=AudioOutputCapabilities(pause=False),
            sample_rate=sample_rate,
        )

    async def capture_frame(self, frame: rtc.AudioFrame) -> None:
        await super().capture_frame(frame)

    def flush(self) -> None:
        super().flush()

    def clear_buffer(self) -> None:
        pass
