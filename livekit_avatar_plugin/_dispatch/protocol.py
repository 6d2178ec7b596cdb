"""What the agent tells the avatar worker, carried in the dispatch's job metadata."""

from __future__ import annotations

from livekit import api
from pydantic import BaseModel, ConfigDict, Field

from .._config import VideoOptions

# Bumped when a field changes meaning, so a worker can refuse a job it would misread.
PROTOCOL_VERSION = 2  # 2: the avatar sends heartbeats

# A dispatched avatar tells its agent it is alive this often, on a lossy data packet: a
# crashed worker's participant lingers ~20 s before the server drops it, and the agent
# should speak by itself (and bring the face back elsewhere) long before that. Each beat
# also says how the avatar keeps up with the agent's speech (``Beat``), which the agent
# needs within a fraction of a second to hand a reply over under heavy loss.
HEARTBEAT_TOPIC = "lk.avatar.alive"
HEARTBEAT_S = 0.1
# Silence this long is death: ten beats in a row lost at 20 % packet loss is 1e-7.
HEARTBEAT_SILENT_S = 2.5
# On a lossy link the beats can wait seconds behind one of the avatar's reliable messages
# being retransmitted (the congestion window is shared), so there the avatar also says
# it is alive every ``ALIVE_S`` in this attribute of its own, set through the server's
# API and passed on by the signalling connection.
ALIVE_ATTRIBUTE = "lk.avatar.alive"
ALIVE_S = 1.0
# The agent asks its avatar to give a reply up (``GiveUp``) two ways until a beat answers:
# a lossy packet sent again every 50 ms, and the avatar's participant attribute, set
# through the server's API. Under heavy loss the packet can wait seconds behind the
# reliable speech stream, whose retransmissions share its congestion window; the
# attribute reaches the avatar by its signalling connection instead. A starved avatar
# also gives a reply up by itself (``Beat.gave_up``).
GIVE_UP_TOPIC = "lk.avatar.give_up"
GIVE_UP_ATTRIBUTE = "lk.avatar.give_up"
# The avatar says what it gave up the same two ways: in its beats, and in this attribute
# of its own (``GaveUp``), set through the server's API.
GAVE_UP_ATTRIBUTE = "lk.avatar.gave_up"
# The agent ends its avatar by setting this attribute of the avatar's, so that the avatar
# leaves by itself: a participant the server removes keeps every track it published, and
# the native thread of its audio source, for the rest of its process (rust-sdks#1443).
# The server removes it only if it has not left within ``LEAVE_WAIT_S``.
LEAVE_ATTRIBUTE = "lk.avatar.leave"
LEAVE_WAIT_S = 2.0


class Beat(BaseModel):
    """A heartbeat's payload: the avatar's ``Lag`` and its answer to the last give-up."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    seq: int = Field(ge=0, description="counts up from 0 each beat: the agent measures their loss")
    ready: bool
    begun: int = Field(ge=0)
    open: bool
    received_s: float = Field(ge=0)
    heard_s: float = Field(ge=0)
    starving_s: float = Field(ge=0)
    uplink_loss: float = Field(ge=0, le=1)
    answered: int = Field(-1, description="the last GiveUp.id answered (-1: none yet)")
    answer: float | None = Field(
        None, description="seconds heard of the reply given up; None: it had already finished"
    )
    gave_up: tuple[int, float] | None = Field(
        None, description="(mark, seconds heard) of the last reply the avatar gave up"
    )
    reports: int | None = Field(None, description="playback_finished reports sent so far")
    recent_reports: list[tuple[float, bool]] = Field(
        default_factory=list, description="(playback_position, interrupted) of the last few, oldest first"
    )


class GiveUp(BaseModel):
    """The agent's request: give the reply that began after ``mark`` segments up to the
    agent's own voice, if it is still playing or has not begun."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: int = Field(ge=0)
    mark: int = Field(ge=0, description="``Lag.begun`` when the reply went to the avatar")


class AvatarJobRequest(BaseModel):
    """The avatar job's instructions, as JSON in ``CreateAgentDispatchRequest.metadata``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: int = PROTOCOL_VERSION
    agent_identity: str = Field(min_length=1, description="the agent whose speech to play")
    avatar_identity: str = Field(
        min_length=1, description="the identity to join as; the agent streams audio to it"
    )
    avatar_name: str = Field("avatar", min_length=1)
    avatar: str = Field(
        "default",
        description="'default' or a path to an avatar package on the worker's file system",
    )
    video: VideoOptions = Field(default_factory=VideoOptions)
    audio_sample_rate: int = 24000
    video_delay_ms: float = 0.0
    max_duration_s: float = Field(3600.0, gt=0)
    background: str | tuple[int, int, int] = Field(
        "keep", description="'keep', an (r, g, b) colour or an image path on the worker's file system"
    )


class GaveUp(BaseModel):
    """The avatar's give-up attribute: its last answer and last give-up, as in ``Beat``."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    answered: int = -1
    answer: float | None = None
    gave_up: tuple[int, float] | None = None


async def set_avatar_attribute(lk: api.LiveKitAPI, room: str, avatar: str, key: str, value: str) -> None:
    """Set one attribute of the avatar participant through the server's API (merged with
    the rest): the signalling path, which the data channel's retransmissions never hold."""
    await lk.room.update_participant(
        api.UpdateParticipantRequest(room=room, identity=avatar, attributes={key: value})
    )


async def server_lists(lk: api.LiveKitAPI, room: str, identity: str) -> bool:
    """Whether the server still lists ``identity`` in ``room``: it drops a departed
    participant at once, but tells the other participants ~2 s later."""
    try:
        await lk.room.get_participant(api.RoomParticipantIdentity(room=room, identity=identity))
    except api.TwirpError as exc:
        if exc.code == api.TwirpErrorCode.NOT_FOUND:
            return False
        raise
    return True
