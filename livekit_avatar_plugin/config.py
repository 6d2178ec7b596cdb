"""Typed options for :class:`~livekit_avatar_plugin.AvatarSession`.

Every option is validated when the session is constructed, so a bad value fails
immediately with pydantic's error naming the field, not minutes later in a room.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class VideoOptions(BaseModel):
    """Size and rate of the avatar's published video."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    width: int = Field(512, ge=64, le=1920, description="output width in pixels (even)")
    height: int = Field(512, ge=64, le=1920, description="output height in pixels (even)")
    fps: float = Field(25.0, ge=5.0, le=60.0, description="published frame rate")

    @model_validator(mode="after")
    def _even_dimensions(self) -> VideoOptions:
        # I420 encoders need even sizes; reject here rather than at the first frame.
        for name in ("width", "height"):
            if getattr(self, name) % 2:
                raise ValueError(f"{name} must be even for the video encoder")
        return self


AvatarMode = Literal["participant", "in_process"]
"""``participant``: the avatar joins as its own participant, publishing on behalf of the
agent (the default, like hosted avatars). ``in_process``: the agent's own participant
publishes the avatar video and audio; no second participant joins."""


class AvatarSessionOptions(BaseModel):
    """Everything :class:`AvatarSession` accepts besides the avatar itself."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    video: VideoOptions = Field(default_factory=VideoOptions)
    mode: AvatarMode = "participant"
    avatar_identity: str | None = Field(
        None,
        min_length=1,
        max_length=128,
        description="identity of the avatar participant; a unique one is made per job if unset",
    )
    avatar_name: str = Field("avatar", min_length=1, max_length=128)
    audio_sample_rate: int = Field(
        24000, description="sample rate of the audio the avatar publishes"
    )
    video_delay_ms: float = Field(
        0.0,
        ge=0.0,
        le=300.0,
        description=(
            "hold each video frame back this long after its audio starts playing. Leave at 0 "
            "for browsers: they lip-sync audio and video of one stream from capture times. "
            "Set ~75 when viewers are SDK clients that render video on arrival without A/V "
            "sync, whose audio jitter buffer delays sound by about that much"
        ),
    )
    max_duration_s: float = Field(
        3600.0,
        gt=0,
        le=86400.0,
        description="hard cap on the session; also bounds the avatar token's lifetime",
    )

    idle_timeout_s: float | None = Field(
        120.0,
        gt=0,
        description="close after this long with no user speech and no agent speech; None disables",
    )
    user_absent_timeout_s: float = Field(
        60.0,
        ge=10.0,
        description="close after this long with no user (non-agent participant) in the room",
    )
    goodbye: str | None = Field(
        None,
        min_length=1,
        max_length=500,
        description="a line the avatar says before it leaves on a timeout",
    )

    @model_validator(mode="after")
    def _supported_rate(self) -> AvatarSessionOptions:
        if self.audio_sample_rate not in (16000, 24000, 48000):
            raise ValueError("audio_sample_rate must be 16000, 24000 or 48000")
        return self
