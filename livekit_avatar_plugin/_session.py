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
import logging
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from livekit import rtc
from livekit.agents import MetricsCollectedEvent
from livekit.agents.metrics.base import AvatarMetrics
from livekit.agents.types import NOT_GIVEN, NotGivenOr
from livekit.agents.voice.avatar import AvatarSession as _LiveKitAvatarSession
from livekit.agents.voice.io import AudioOutput

from . import _compat
from ._native_logs import quiet_benign_errors
from ._runtime import PROVIDER
from ._transport import ServerCredentials, Transport, TransportHooks, make_transport
from ._config import (
    AvatarMode,
    AvatarSessionOptions,
    FirstMessage,
    InputDuringProtection,
    ToolProtection,
    VideoOptions,
)
from ._errors import AvatarSessionError
from ._failover import FailoverAudioOutput
from ._handover import LagWatch
from ._lifecycle import (
    AvatarClosedEvent,
    AvatarFailedEvent,
    AvatarRecoveredEvent,
    CloseReason,
    SessionWatchdog,
)
from ._pipeline import FacePipeline
from ._recovery import RetrySchedule, bring_back
from ._state import follow_agent_session
from ._turns import Protection, TurnController, disable_false_interruption_resume

if TYPE_CHECKING:
    from livekit.agents import AgentSession

    from ._face.avatar import Avatar

logger = logging.getLogger("livekit_avatar_plugin.session")

__all__ = ["PROVIDER", "AvatarSession", "AvatarSessionError"]


class AvatarSession(
    _LiveKitAvatarSession[
        Literal[
            "avatar_closed",
            "avatar_failed",
            "avatar_recovered",
            "protection_started",
            "protection_released",
        ]
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

    The other arguments are the fields of :class:`AvatarSessionOptions` (see their
    descriptions there), plus the shortcuts ``video_quality`` and ``video_codec``; an
    argument left out takes the option's default. Invalid values raise pydantic's
    ``ValidationError`` naming the field.
    """

    def __init__(
        self,
        *,
        avatar: str | Path | Avatar = "default",
        face_pipeline: FacePipeline | None = None,
        livekit_url: str | None = None,
        api_key: str | None = None,
        api_secret: str | None = None,
        mode: NotGivenOr[AvatarMode] = NOT_GIVEN,
        video: NotGivenOr[VideoOptions | dict[str, Any]] = NOT_GIVEN,
        video_quality: NotGivenOr[str] = NOT_GIVEN,
        video_codec: NotGivenOr[str] = NOT_GIVEN,
        avatar_identity: NotGivenOr[str | None] = NOT_GIVEN,
        avatar_name: NotGivenOr[str] = NOT_GIVEN,
        agent_name: NotGivenOr[str] = NOT_GIVEN,
        dispatch_timeout_s: NotGivenOr[float] = NOT_GIVEN,
        audio_sample_rate: NotGivenOr[int] = NOT_GIVEN,
        video_delay_ms: NotGivenOr[float] = NOT_GIVEN,
        max_duration_s: NotGivenOr[float] = NOT_GIVEN,
        idle_timeout_s: NotGivenOr[float | None] = NOT_GIVEN,
        user_absent_timeout_s: NotGivenOr[float] = NOT_GIVEN,
        first_message: NotGivenOr[FirstMessage | dict[str, Any]] = NOT_GIVEN,
        tool_protection: NotGivenOr[ToolProtection | dict[str, Any]] = NOT_GIVEN,
        input_during_protection: NotGivenOr[InputDuringProtection] = NOT_GIVEN,
        goodbye: NotGivenOr[str | None] = NOT_GIVEN,
        background: NotGivenOr[str | tuple[int, int, int]] = NOT_GIVEN,
    ) -> None:
        super().__init__()
        given = {
            name: value
            for name, value in dict(
                mode=mode, video=video, video_quality=video_quality, video_codec=video_codec,
                avatar_identity=avatar_identity, avatar_name=avatar_name, agent_name=agent_name,
                dispatch_timeout_s=dispatch_timeout_s, audio_sample_rate=audio_sample_rate,
                video_delay_ms=video_delay_ms, max_duration_s=max_duration_s,
                idle_timeout_s=idle_timeout_s, user_absent_timeout_s=user_absent_timeout_s,
                first_message=first_message, tool_protection=tool_protection,
                input_during_protection=input_during_protection, goodbye=goodbye,
                background=background,
            ).items()  # fmt: skip
            if value is not NOT_GIVEN
        }
        self.options = AvatarSessionOptions(**given)
        if isinstance(avatar, (str, Path)) and str(avatar) != "default":
            if not Path(avatar).exists():
                raise FileNotFoundError(f"avatar package {avatar} does not exist")
        self._transport: Transport = make_transport(
            self.options.mode,
            options=self.options,
            avatar=avatar,
            face_pipeline=face_pipeline,
            credentials=ServerCredentials(livekit_url, api_key, api_secret),
            identity=self.options.avatar_identity or f"avatar-{uuid.uuid4().hex[:12]}",
            hooks=TransportHooks(
                emit_metrics=self._report_metrics,
                on_published=self._on_published,
                on_died=self._on_face_died,
                on_agent_left=lambda detail: self._close_soon(CloseReason.AGENT_LEFT, detail),
            ),
        )
        self._failover: FailoverAudioOutput | None = None
        self._background: set[asyncio.Task[Any]] = set()  # fail-overs and closes begun by callbacks
        self._failed = False
        self._retries = RetrySchedule()  # bringing a failed face back: at most 3 tries a minute
        self._closing = False
        self._unfollow: Callable[[], None] | None = None  # stops following the agent's state
        self._agent_room: rtc.Room | None = None
        self._session: AgentSession | None = None
        self._watchdog: SessionWatchdog | None = None
        self._started_at: float | None = None
        self._close_reason = CloseReason.CLOSED_BY_APP
        self._close_detail = "aclose() called"
        self._publish_taps: list[Callable[[str, float, object], None]] = []
        self._turns: TurnController | None = None

    @property
    def avatar_identity(self) -> str:
        return self._transport.identity

    @property
    def provider(self) -> str:
        return PROVIDER

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
        """Return once the face is published (a failed one never will)."""
        if not self._failed:
            await self._transport.wait_on_screen()

    def _on_published(self, kind: str, t: float, frame: object) -> None:
        for tap in self._publish_taps:
            tap(kind, t, frame)

    def _report_metrics(self, metrics: AvatarMetrics) -> None:
        self.emit("metrics_collected", metrics)
        if self._session is not None:
            self._session.emit("metrics_collected", MetricsCollectedEvent(metrics=metrics))

    # -- lifecycle ----------------------------------------------------------------------

    async def start(self, agent_session: AgentSession, room: rtc.Room) -> None:
        """Join the room (or attach in-process) and route the agent's speech to the avatar.

        Call it before ``agent_session.start()``: the agent's audio sink is swapped here.
        """
        if not room.isconnected():
            raise AvatarSessionError(
                "the agent's room is not connected; call `await ctx.connect()` before "
                "`avatar.start(...)`"
            )
        self._agent_room = room
        self._session = agent_session
        started_at = time.monotonic()
        quiet_benign_errors()
        await super().start(agent_session, room)
        disable_false_interruption_resume(agent_session)
        sink = await self._start_transport(room, started_at)
        agent_session.output.replace_audio_tail(sink)
        self._turns = TurnController(agent_session, self.options, self.emit)
        self._turns.attach(self._wait_on_screen)
        self._unfollow = follow_agent_session(agent_session, self._transport.set_state)
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

    async def _start_transport(self, room: rtc.Room, started_at: float) -> AudioOutput:
        """The agent's audio sink. A transport that can fail over is wrapped so the agent
        speaks with its own voice if the face dies, or never starts."""
        if not self._transport.fails_over:
            return await self._transport.start(room, started_at=started_at)
        rate = self.options.audio_sample_rate
        try:
            output = await self._transport.start(room, started_at=started_at)
        except AvatarSessionError as exc:
            logger.error("%s; the agent will speak without an avatar", exc)
            self._failover = FailoverAudioOutput(None, room=room, sample_rate=rate)
            await self._failover.failover(0.0)
            self._failed = True
            self.emit("avatar_failed", AvatarFailedEvent(detail=str(exc)))
            self._spawn(self._recover())
            return self._failover
        self._failover = FailoverAudioOutput(output, room=room, sample_rate=rate)
        if self._transport.hands_over:
            self._spawn(LagWatch(self._transport, self._failover).run())
        return self._failover

    # -- timeouts, failures and teardown ------------------------------------------------

    async def _expire(self, reason: CloseReason, detail: str) -> None:
        """A timeout fired: say goodbye if configured, then close the whole session."""
        if self._closing:
            return
        self._close_reason, self._close_detail = reason, detail
        logger.warning("avatar session timed out (%s): %s", reason.value, detail)
        session = self._session
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

    def _on_agent_room_disconnected(self, *_: Any) -> None:
        self._close_soon(CloseReason.AGENT_LEFT, "agent room disconnected")

    def _on_face_died(self, why: str) -> None:
        if not self._closing:
            self._spawn(self._fail_over(why))

    async def _fail_over(self, detail: str) -> None:
        """The avatar died mid-session: keep the conversation going without a face."""
        if self._failed or self._closing or self._failover is None:
            return
        self._failed = True
        heard = self._transport.heard_position()
        await self._transport.stop_face(f"failed: {detail}")
        await self._failover.failover(heard)
        logger.error("avatar failed (%s); the agent continues with audio only", detail)
        self.emit("avatar_failed", AvatarFailedEvent(detail=detail))
        self._spawn(self._recover())

    async def _recover(self) -> None:
        """Bring the face back after a fail-over; the next reply is then spoken by it."""
        room, failover = self._agent_room, self._failover
        if not self._transport.recovers or room is None or failover is None:
            return
        failed_at = time.monotonic()
        output = await bring_back(self._transport, room, self._retries, lambda: self._closing)
        if output is None or self._closing:
            return  # closing takes a new face down with the transport
        self._failed = False
        failover.recover(output)
        self.emit("avatar_recovered", AvatarRecoveredEvent(down_s=time.monotonic() - failed_at))

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

        def done(t: asyncio.Task[Any]) -> None:
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
        if self._agent_room is not None:
            self._agent_room.off("disconnected", self._on_agent_room_disconnected)
        if self._unfollow is not None:
            with contextlib.suppress(Exception):
                self._unfollow()
        current = asyncio.current_task()
        for task in [t for t in self._background if t is not current]:
            task.cancel()  # a fail-over or recovery under way: the session is going anyway
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self._transport.aclose(self._close_reason.value)
        if self._failover is not None:
            await self._failover.aclose()
        if self._transport.separate_participant:
            # LiveKit's base class removes the participant through the server API when
            # running inside a job; outside one the transport has disconnected it.
            with contextlib.suppress(Exception):
                await super().aclose()
        else:
            _compat.detach_without_removal(self)
        self._session = None
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
