"""Typed options for :class:`~livekit_avatar_plugin.AvatarSession`.

Every option is validated when the session is constructed, so a bad value fails
immediately with pydantic's error naming the field, not minutes later in a room.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

# Participant identities and names end up in tokens, logs and viewers' UIs: printable only.
_NAME_PATTERN = r"^[^\x00-\x1f\x7f]+$"


def _no_bool(value: Any, info: ValidationInfo) -> Any:
    """``True`` is an int to Python; as a duration or a size it is always a mistake."""
    if isinstance(value, bool):
        raise ValueError(f"{info.field_name} must be a number, not {value!r}")
    return value


VideoQuality = Literal["auto", "high", "medium", "low"]
"""``auto`` publishes simulcast layers so each subscriber adapts (and starts low, ramping
up); ``high``/``medium``/``low`` pin one resolution and bitrate from the first frame."""

VideoCodecName = Literal["vp8", "h264", "vp9", "av1"]

# (width, height, max bitrate in bps), as in the product documents.
QUALITY_PRESETS: dict[str, tuple[int, int, int]] = {
    "high": (1280, 720, 2_000_000),
    "medium": (854, 480, 1_000_000),
    "low": (640, 360, 500_000),
}
_AUTO_SIZE = (512, 512)


def _auto_bitrate(width: int, height: int, fps: float) -> int:
    # About 0.25 bits per pixel per frame: 512x512 at 25 fps gets ~1.6 Mbps.
    return int(min(2_500_000, max(300_000, width * height * fps * 0.25)))


class VideoOptions(BaseModel):
    """Quality, size, rate and codec of the avatar's published video.

    ``quality`` picks a preset; ``width``, ``height`` and ``max_bitrate`` override it.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    quality: VideoQuality = "auto"
    width: int = Field(0, ge=64, le=1920, description="output width in pixels (even)")
    height: int = Field(0, ge=64, le=1920, description="output height in pixels (even)")
    fps: float = Field(25.0, ge=5.0, le=60.0, description="published frame rate")
    max_bitrate: int = Field(
        0, ge=100_000, le=10_000_000, description="encoder bitrate cap in bits per second"
    )
    codec: VideoCodecName = "vp8"

    _numbers = field_validator("width", "height", "fps", "max_bitrate", mode="before")(_no_bool)

    @model_validator(mode="before")
    @classmethod
    def _fill_from_preset(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        quality = data.get("quality", "auto")
        width, height, bitrate = QUALITY_PRESETS.get(quality, (*_AUTO_SIZE, 0))
        data.setdefault("width", width)
        data.setdefault("height", height)
        if not data.get("max_bitrate"):
            try:
                fps = float(data.get("fps", 25.0))
                data["max_bitrate"] = bitrate or _auto_bitrate(data["width"], data["height"], fps)
            except (TypeError, ValueError):
                pass  # a bad size or rate: the field validators name it
        return data

    @model_validator(mode="after")
    def _even_dimensions(self) -> VideoOptions:
        # I420 encoders need even sizes; reject here rather than at the first frame.
        for name in ("width", "height"):
            if getattr(self, name) % 2:
                raise ValueError(f"{name} must be even for the video encoder")
        return self

    @property
    def simulcast(self) -> bool:
        return self.quality == "auto"


class FirstMessage(BaseModel):
    """How the session opens (product documents: "Disable" and "Interruptible").

    Enabled with neither ``text`` nor ``instructions``, the greeting is the first speech the
    agent starts on its own (e.g. in ``Agent.on_enter``), or, if it starts none by the time
    the avatar is on screen, one generated from the agent's own instructions.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = Field(
        True, description="false: no greeting; the persona waits for the user to speak first"
    )
    text: str | None = Field(
        None, min_length=1, max_length=2000, description="say exactly this (no LLM call)"
    )
    instructions: str | None = Field(
        None, min_length=1, max_length=4000, description="generate the greeting from these"
    )
    interruptible: bool = Field(
        True,
        description=(
            "false: the greeting plays to completion before user input is accepted "
            "(consent language, instructions)"
        ),
    )

    @model_validator(mode="after")
    def _one_source(self) -> FirstMessage:
        if self.text is not None and self.instructions is not None:
            raise ValueError("give first_message either text or instructions, not both")
        return self


class ToolProtection(BaseModel):
    """Shield tool-driven turns (the tool's execution and its spoken reply) from barge-in."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    enabled: bool = False
    tools: frozenset[str] = Field(
        frozenset(), description="names of the tools to protect; empty means every tool"
    )
    max_hold_s: float = Field(
        30.0,
        gt=0,
        le=600.0,
        description="safety cap: protection is released after this long whatever happens",
    )

    _numbers = field_validator("max_hold_s", mode="before")(_no_bool)

    def covers(self, tool_name: str) -> bool:
        return self.enabled and (not self.tools or tool_name in self.tools)


InputDuringProtection = Literal["discard", "defer"]
"""What happens to what the user says while a turn is protected: ``discard`` drops it (the
product documents' behaviour); ``defer`` keeps it in the chat history and answers it right
after the protected turn ends."""


AvatarMode = Literal["participant", "in_process", "dispatch"]
"""``participant``: the avatar joins as its own participant, publishing on behalf of the
agent (the default, like hosted avatars). ``in_process``: the agent's own participant
publishes the avatar video and audio; no second participant joins. ``dispatch``: LiveKit
dispatches the avatar job to a separate avatar worker (``livekit-avatar worker``)
registered under ``agent_name``; it renders there and publishes on behalf of the agent."""

DEFAULT_AVATAR_AGENT_NAME = "livekit-avatar"


class AvatarSessionOptions(BaseModel):
    """Everything :class:`AvatarSession` accepts besides the avatar itself."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    video: VideoOptions = Field(default_factory=VideoOptions)
    mode: AvatarMode = "participant"
    avatar_identity: str | None = Field(
        None,
        min_length=1,
        max_length=128,
        pattern=_NAME_PATTERN,
        description="identity of the avatar participant; a unique one is made per job if unset",
    )
    avatar_name: str = Field("avatar", min_length=1, max_length=128, pattern=_NAME_PATTERN)
    agent_name: str = Field(
        DEFAULT_AVATAR_AGENT_NAME,
        min_length=1,
        max_length=128,
        pattern=_NAME_PATTERN,
        description="mode='dispatch': the agent name the avatar workers registered under",
    )
    dispatch_timeout_s: float = Field(
        10.0,
        gt=0,
        le=120.0,
        description=(
            "mode='dispatch': how long to wait for a worker to join and publish video before "
            "the agent speaks without a face"
        ),
    )
    audio_sample_rate: int = Field(
        24000, description="sample rate of the audio the avatar publishes"
    )
    video_delay_ms: float = Field(
        0.0,
        ge=0.0,
        le=300.0,
        description=(
            "extra hold on each video frame. Leave at 0 for browsers: they lip-sync audio "
            "and video of one stream from capture times (the server needs room "
            "sync_streams). Viewers that render video on arrival without A/V sync hear "
            "audio late by their jitter buffer; this can compensate"
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
    first_message: FirstMessage = Field(default_factory=FirstMessage)
    tool_protection: ToolProtection = Field(default_factory=ToolProtection)
    input_during_protection: InputDuringProtection = "discard"
    goodbye: str | None = Field(
        None,
        min_length=1,
        max_length=500,
        description="a line the avatar says before it leaves on a timeout",
    )
    background: str | tuple[int, int, int] = Field(
        "keep",
        description=(
            "behind the person: 'keep' (the avatar's own), a colour ('#00ff00' or "
            "(0, 255, 0)) or an image file path"
        ),
    )

    _numbers = field_validator(
        "dispatch_timeout_s", "audio_sample_rate", "video_delay_ms", "max_duration_s",
        "idle_timeout_s", "user_absent_timeout_s", mode="before",
    )(_no_bool)  # fmt: skip

    @field_validator("background", mode="before")
    @classmethod
    def _background(cls, value: Any) -> Any:
        from ._render.background import parse_background

        return parse_background(value)  # its BackgroundError is a ValueError naming the problem

    @model_validator(mode="before")
    @classmethod
    def _video_shortcuts(cls, data: Any) -> Any:
        """Accept the product documents' names: ``video_quality=`` and ``video_codec=``."""
        if not isinstance(data, dict) or not ({"video_quality", "video_codec"} & data.keys()):
            return data
        data = dict(data)
        video = data.get("video", {})
        video = video.model_dump(exclude={"width", "height", "max_bitrate"}) if isinstance(
            video, VideoOptions
        ) else dict(video)
        if "video_quality" in data:
            video["quality"] = data.pop("video_quality")
        if "video_codec" in data:
            video["codec"] = data.pop("video_codec")
        data["video"] = video
        return data

    @model_validator(mode="after")
    def _supported_rate(self) -> AvatarSessionOptions:
        if self.audio_sample_rate not in (16000, 24000, 48000):
            raise ValueError("audio_sample_rate must be 16000, 24000 or 48000")
        return self
