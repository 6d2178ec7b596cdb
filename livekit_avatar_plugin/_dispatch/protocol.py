"""What the agent tells the avatar worker, carried in the dispatch's job metadata."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from .._config import VideoOptions

# Bumped when a field changes meaning, so a worker can refuse a job it would misread.
PROTOCOL_VERSION = 2  # 2: the avatar sends heartbeats

# A dispatched avatar tells its agent it is alive this often, on a lossy data packet: a
# crashed worker's participant lingers ~20 s before the server drops it, and the agent
# should speak by itself (and bring the face back elsewhere) long before that.
HEARTBEAT_TOPIC = "lk.avatar.alive"
HEARTBEAT_S = 0.25
# Silence this long is death: ten beats in a row lost at 20 % packet loss is 1e-7.
HEARTBEAT_SILENT_S = 2.5


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
