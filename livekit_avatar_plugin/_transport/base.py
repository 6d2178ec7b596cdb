"""What every transport of a session does: start -> the agent's audio output, heard
position, what the face shows, aclose."""

from __future__ import annotations

import asyncio
import os
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from livekit import rtc
from livekit.agents.metrics.base import AvatarMetrics
from livekit.agents.voice.io import AudioOutput

from .._runtime import build_face
from .._config import AvatarSessionOptions
from .._errors import AvatarSessionError
from .._generator import AvatarVideoGenerator
from .._publisher import AvatarPublisher, Lag
from .._pipeline import FacePipeline, load_pipeline
from .._state import ConversationState

if TYPE_CHECKING:
    from .._face.avatar import Avatar


@dataclass(frozen=True)
class TransportHooks:
    """How a transport reports back to its session."""

    emit_metrics: Callable[[AvatarMetrics], Any]
    on_published: Callable[[str, float, object], None]
    on_died: Callable[[str], None]  # the face stopped working: the session fails over
    on_agent_left: Callable[[str], None]  # the agent is gone: the session closes


@dataclass(frozen=True)
class ServerCredentials:
    """The server a remote avatar joins; unset fields come from ``LIVEKIT_*``."""

    url: str | None = None
    api_key: str | None = None
    api_secret: str | None = None

    def resolve(self) -> tuple[str, str, str]:
        found = {
            "LIVEKIT_URL": self.url or os.environ.get("LIVEKIT_URL"),
            "LIVEKIT_API_KEY": self.api_key or os.environ.get("LIVEKIT_API_KEY"),
            "LIVEKIT_API_SECRET": self.api_secret or os.environ.get("LIVEKIT_API_SECRET"),
        }
        missing = [name for name, value in found.items() if not value]
        if missing:
            raise AvatarSessionError(
                "the avatar participant needs server credentials: set "
                + ", ".join(missing)
                + " or pass livekit_url/api_key/api_secret (or use mode='in_process')"
            )
        return found["LIVEKIT_URL"], found["LIVEKIT_API_KEY"], found["LIVEKIT_API_SECRET"]  # type: ignore[return-value]


class Transport(ABC):
    """How one session's face reaches the room. One object per mode."""

    #: a failed avatar leaves the agent speaking with its own voice
    fails_over: bool = True
    #: the avatar is a participant of its own, removed from the room on close
    separate_participant: bool = True
    #: after a fail-over, :meth:`restart` can bring the face back
    recovers: bool = False
    #: :meth:`lag` says how the face keeps up, so a reply it falls behind on can be
    #: handed to the agent's own voice (:mod:`.._handover`)
    hands_over: bool = False

    def __init__(
        self,
        *,
        options: AvatarSessionOptions,
        avatar: str | Path | Avatar,
        face_pipeline: FacePipeline | None,
        credentials: ServerCredentials,
        identity: str,
        hooks: TransportHooks,
    ) -> None:
        self._options = options
        self._avatar = avatar
        self._face_pipeline = face_pipeline
        self._credentials = credentials
        self._identity = identity
        self._hooks = hooks
        self._publisher: AvatarPublisher | None = None

    @property
    def identity(self) -> str:
        return self._identity

    @property
    def publisher(self) -> AvatarPublisher | None:
        """The face published from this process, if any (for metrics and tests)."""
        return self._publisher

    @abstractmethod
    async def start(self, room: rtc.Room, *, started_at: float) -> AudioOutput:
        """Start the face for the agent in ``room``; returns where the agent's speech goes.
        Raises :class:`AvatarSessionError` when the avatar cannot start."""

    async def restart(self, room: rtc.Room) -> AudioOutput:
        """Bring a failed face back; returns where the agent's speech goes now. Raises
        :class:`AvatarSessionError` when it cannot come back (yet)."""
        raise AvatarSessionError(f"{type(self).__name__} cannot bring a failed face back")

    def heard_position(self) -> float:
        """Seconds of the current reply the user has heard."""
        return self._publisher.heard_position() if self._publisher is not None else 0.0

    def lag(self) -> Lag | None:
        """How the face keeps up with the agent's speech (``None``: not known here)."""
        return self._publisher.lag() if self._publisher is not None and self.hands_over else None

    def connected(self) -> bool:
        """Every connection the face needs is up (not reconnecting)."""
        return True

    def gave_up(self) -> tuple[int, float] | None:
        """(mark, seconds heard) of the last reply the face gave up by itself, if it can."""
        return None

    async def give_up(self, mark: int) -> float | None:
        """The face gives the reply it was sent after ``mark`` segments up to the agent's
        voice (``AvatarPublisher.give_up``); returns the seconds heard, or ``None`` if it
        had already finished it."""
        return self._publisher.give_up(mark) if self._publisher is not None else None

    async def wait_on_screen(self) -> None:
        """Return once the face is published."""
        if self._publisher is not None:
            await self._publisher.wait_published()

    def set_state(self, state: ConversationState) -> None:
        """What the face shows between its own speech."""
        if self._publisher is not None:
            self._publisher.set_state(state)

    async def stop_face(self, reason: str) -> None:
        """The face is given up (fail-over); the transport keeps watching the agent."""
        publisher, self._publisher = self._publisher, None
        if publisher is not None:
            await publisher.aclose(reason)

    async def aclose(self, reason: str) -> None:
        await self.stop_face(reason)

    async def _build_face(self) -> AvatarVideoGenerator:
        pipeline = self._face_pipeline
        if pipeline is None:
            pipeline = await asyncio.to_thread(load_pipeline, self._avatar, self._options.background)
        return await build_face(
            pipeline, video=self._options.video, sample_rate=self._options.audio_sample_rate
        )
