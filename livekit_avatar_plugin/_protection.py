"""A protected turn: the events that announce it, and the hold an app takes for its own flow."""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, TypeVar

if TYPE_CHECKING:
    from livekit.agents.voice import SpeechHandle

    from ._turns import TurnController

ProtectionKind = Literal["greeting", "tool", "app"]
ReleaseCause = Literal[
    "speech_done", "no_speech", "error", "cancelled", "interrupted", "max_hold", "closed", "exit"
]

_F = TypeVar("_F", bound=Callable[..., Awaitable[Any]])

@dataclass(frozen=True)
class ProtectionStartedEvent:
    """Emitted as ``protection_started`` when a turn becomes protected."""

    kind: ProtectionKind
    reason: str
    created_at: float = field(default_factory=time.time)


@dataclass(frozen=True)
class ProtectionReleasedEvent:
    """Emitted as ``protection_released``; ``cause`` says how the protected turn ended."""

    kind: ProtectionKind
    reason: str
    cause: ReleaseCause
    held_s: float
    created_at: float = field(default_factory=time.time)


@dataclass
class _Hold:
    kind: ProtectionKind
    reason: str
    started: float
    speech: SpeechHandle | None = None
    tool_status: str | None = None  # set when a protected tool ends
    tool_reply: bool = True  # False once LiveKit reports the tool produced no reply
    timer: asyncio.TimerHandle | None = None


class Protection:
    """A hold the app takes for its own flow: ``async with`` it, or decorate a coroutine."""

    def __init__(self, controller: TurnController, reason: str) -> None:
        self._controller = controller
        self._reason = reason
        self._key: object | None = None

    async def __aenter__(self) -> Protection:
        self._key = self._controller._acquire("app", self._reason)
        return self

    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if self._key is not None:
            cause: ReleaseCause = "exit"
            if exc_type is not None:
                cause = "cancelled" if issubclass(exc_type, asyncio.CancelledError) else "error"
            self._controller._release(self._key, cause)
            self._key = None

    def __call__(self, fn: _F) -> _F:
        @functools.wraps(fn)
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            async with Protection(self._controller, self._reason):
                return await fn(*args, **kwargs)

        return wrapper  # type: ignore[return-value]
