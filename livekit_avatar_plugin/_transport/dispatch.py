"""``mode="dispatch"``: LiveKit dispatches the avatar to a ``livekit-avatar worker``,
which renders and publishes it; this process loads no face models."""

from __future__ import annotations

from pathlib import Path

from livekit import rtc
from livekit.agents.voice.io import AudioOutput

from .._dispatch.client import AvatarDispatchError, DispatchedAvatar
from .._dispatch.protocol import AvatarJobRequest
from .._errors import AvatarSessionError
from .._publisher import Lag
from .remote import RemoteTransport


class DispatchTransport(RemoteTransport):
    """The worker follows the conversation from the room itself (see dispatch.worker), so
    ``set_state`` has nothing to do here. The avatar's beats say how it keeps up, and it
    gives a reply up when asked (``_dispatch.heartbeat``)."""

    recovers = True
    hands_over = True

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self._dispatched: DispatchedAvatar | None = None
        self._base_identity = self.identity
        self._restarts = 0

    async def start(self, room: rtc.Room, *, started_at: float) -> AudioOutput:
        return await self._dispatch(room, self._base_identity)

    async def restart(self, room: rtc.Room) -> AudioOutput:
        """Dispatch a new avatar job (LiveKit picks a live worker), under a new identity:
        the failed one may linger in the room until the server times it out."""
        dead, self._dispatched = self._dispatched, None
        if dead is not None:
            await dead.aclose()
        self._restarts += 1
        return await self._dispatch(room, f"{self._base_identity}-b{self._restarts}")

    async def _dispatch(self, room: rtc.Room, identity: str) -> AudioOutput:
        self._ignore_avatar_media(room)
        url, key, secret = self._credentials.resolve()
        options = self._options
        avatar = self._avatar
        request = AvatarJobRequest(
            agent_identity=room.local_participant.identity,
            avatar_identity=identity,
            avatar_name=options.avatar_name,
            avatar=str(avatar) if isinstance(avatar, (str, Path)) else "default",
            video=options.video,
            audio_sample_rate=options.audio_sample_rate,
            video_delay_ms=options.video_delay_ms,
            max_duration_s=options.max_duration_s,
            background=options.background,
        )
        dispatched = DispatchedAvatar(
            room, request, agent_name=options.agent_name, url=url, api_key=key,
            api_secret=secret, timeout_s=options.dispatch_timeout_s,
        )  # fmt: skip
        try:
            await dispatched.start(
                on_left=self._hooks.on_died,
                on_agent_gone=lambda: self._hooks.on_agent_left("agent room disconnected"),
            )
        except AvatarDispatchError as exc:
            raise AvatarSessionError(str(exc)) from exc
        self._dispatched = dispatched
        self._identity = dispatched.identity  # a retried dispatch joins under a new one
        output = self._speech_output(room)
        output.judge_report = dispatched.judge_report
        dispatched.track_playback(output)
        return output

    def heard_position(self) -> float:
        return self._dispatched.heard_position() if self._dispatched is not None else 0.0

    def lag(self) -> Lag | None:
        return self._dispatched.lag() if self._dispatched is not None else None

    def connected(self) -> bool:
        return self._dispatched is not None and self._dispatched.connected()

    def gave_up(self) -> tuple[int, float] | None:
        return self._dispatched.gave_up() if self._dispatched is not None else None

    async def give_up(self, mark: int) -> float | None:
        return await self._dispatched.give_up(mark) if self._dispatched is not None else None

    async def aclose(self, reason: str) -> None:
        await super().aclose(reason)
        if self._dispatched is not None:
            await self._dispatched.aclose()
