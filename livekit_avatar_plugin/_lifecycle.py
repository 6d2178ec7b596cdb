"""Session lifecycle: the timeouts that end a session, and why a session ended.

A hosted avatar bills by the minute, so its provider closes forgotten sessions; a local
one still holds a CPU, a room slot and an agent. The watchdog applies the same three
limits as the product documents: no speech for ``idle_timeout_s``, no user in the room for
``user_absent_timeout_s``, and ``max_duration_s`` overall.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from livekit import rtc
from livekit.agents.types import ATTRIBUTE_PUBLISH_ON_BEHALF

logger = logging.getLogger("livekit_avatar_plugin.lifecycle")

_TICK_S = 0.1


class CloseReason(str, enum.Enum):
    """Why an avatar session ended (``AvatarClosedEvent.reason``)."""

    IDLE_TIMEOUT = "idle_timeout"
    USER_ABSENT = "user_absent"
    MAX_DURATION = "max_duration"
    AGENT_LEFT = "agent_left"
    CLOSED_BY_APP = "closed_by_app"


@dataclass(frozen=True)
class AvatarClosedEvent:
    """Emitted once as ``avatar_closed`` when the session ends."""

    reason: CloseReason
    detail: str
    duration_s: float


@dataclass(frozen=True)
class AvatarFailedEvent:
    """Emitted as ``avatar_failed`` when the avatar participant dies or cannot join.

    The session goes on: the agent publishes its own audio from then on, starting where
    the user stopped hearing the avatar.
    """

    detail: str


@dataclass(frozen=True)
class AvatarRecoveredEvent:
    """Emitted as ``avatar_recovered`` when a failed avatar is back on screen.

    The reply under way (spoken by the agent's own voice) finishes as it started; the next
    one is spoken by the face. ``down_s``: seconds since the avatar failed.
    """

    down_s: float


def is_user(participant: rtc.RemoteParticipant, avatar_identity: str) -> bool:
    """A human (or other non-agent client), not an agent and not an avatar."""
    if participant.identity == avatar_identity:
        return False
    if participant.kind == rtc.ParticipantKind.PARTICIPANT_KIND_AGENT:
        return False
    return not participant.attributes.get(ATTRIBUTE_PUBLISH_ON_BEHALF)


class SessionWatchdog:
    """Watches speech and presence; calls ``on_expire(reason, detail)`` once."""

    def __init__(
        self,
        *,
        room: rtc.Room,
        agent_session: Any,
        avatar_identity: str,
        idle_timeout_s: float | None,
        user_absent_timeout_s: float,
        max_duration_s: float,
        on_expire: Callable[[CloseReason, str], Awaitable[None]],
    ) -> None:
        self._room = room
        self._session = agent_session
        self._avatar_identity = avatar_identity
        self._idle_timeout_s = idle_timeout_s
        self._user_absent_timeout_s = user_absent_timeout_s
        self._max_duration_s = max_duration_s
        self._on_expire = on_expire
        self._started_at = time.monotonic()
        self._last_activity = self._started_at
        self._user_speaking = False
        self._agent_busy = False
        self._task: asyncio.Task[None] | None = None

    @property
    def started_at(self) -> float:
        return self._started_at

    def start(self) -> None:
        self._session.on("user_state_changed", self._on_user_state)
        self._session.on("agent_state_changed", self._on_agent_state)
        self._task = asyncio.create_task(self._run(), name="avatar-session-watchdog")

    def stop(self) -> None:
        for name, handler in (
            ("user_state_changed", self._on_user_state),
            ("agent_state_changed", self._on_agent_state),
        ):
            try:
                self._session.off(name, handler)
            except Exception:  # noqa: BLE001 - already detached
                pass
        if self._task is not None and self._task is not asyncio.current_task():
            self._task.cancel()

    def _on_user_state(self, ev: Any) -> None:
        self._user_speaking = ev.new_state == "speaking"
        self._last_activity = time.monotonic()

    def _on_agent_state(self, ev: Any) -> None:
        # A reply being prepared (thinking, e.g. a slow tool) is not idleness either.
        self._agent_busy = ev.new_state in ("speaking", "thinking")
        self._last_activity = time.monotonic()

    def _users_present(self) -> bool:
        return any(
            is_user(p, self._avatar_identity) for p in self._room.remote_participants.values()
        )

    async def _run(self) -> None:
        absent_since: float | None = None
        while True:
            await asyncio.sleep(_TICK_S)
            now = time.monotonic()
            if now - self._started_at >= self._max_duration_s:
                await self._on_expire(
                    CloseReason.MAX_DURATION, f"reached max_duration_s={self._max_duration_s:g}"
                )
                return
            if self._users_present():
                absent_since = None
            elif absent_since is None:
                absent_since = now
            if absent_since is not None and now - absent_since >= self._user_absent_timeout_s:
                await self._on_expire(
                    CloseReason.USER_ABSENT,
                    f"no user in the room for {self._user_absent_timeout_s:g} s",
                )
                return
            if self._user_speaking or self._agent_busy:
                self._last_activity = now
            elif (
                self._idle_timeout_s is not None
                and now - self._last_activity >= self._idle_timeout_s
            ):
                await self._on_expire(
                    CloseReason.IDLE_TIMEOUT, f"no speech for {self._idle_timeout_s:g} s"
                )
                return
