"""Every option of config.py rejects bad values at construction, naming the field.

The table below has invalid values for every field of every options model; a field added
to config.py without cases here fails ``test_every_field_has_invalid_cases``.
"""

from __future__ import annotations

import math

import pytest
from pydantic import BaseModel, ValidationError

from livekit_avatar_plugin import AvatarSession
from livekit_avatar_plugin import _config as C
NAN, INF = math.nan, math.inf
BAD_STRINGS = ["", "x" * 129, "line\nbreak", "nul\x00", 5, None]

INVALID: dict[type[BaseModel], dict[str, list]] = {
    C.VideoOptions: {
        "quality": ["ultra", "", None, 3, "HIGH"],
        "width": [0, 63, 1921, 511, -512, "wide", True, NAN, 512.5],
        "height": [0, 63, 1921, 511, None, True, INF],
        "fps": [0, 4.9, 60.1, -25, NAN, INF, "fast", True],
        "max_bitrate": [1, 99_999, 10_000_001, -1, "lots", True, NAN],
        "codec": ["h265", "VP8", "", None, 8],
    },
    C.FirstMessage: {
        "enabled": ["sometimes", 2, None, [True]],
        "text": ["", "x" * 2001, 5, ["hi"]],
        "instructions": ["", "x" * 4001, 5, {"a": 1}],
        "interruptible": ["maybe", 2, None],
    },
    C.ToolProtection: {
        "enabled": ["yes please", 3, None],
        "tools": ["not-a-set", 5, [1, 2], None],
        "max_hold_s": [0, -1, 600.1, NAN, INF, True, "long"],
    },
    C.AvatarSessionOptions: {
        "video": ["hd", 5, {"width": 7}, {"nonsense": 1}],
        "mode": ["hologram", "", None, 1, "PARTICIPANT"],
        "avatar_identity": BAD_STRINGS[:-1],  # None is the documented "make one" default
        "avatar_name": BAD_STRINGS,
        "agent_name": BAD_STRINGS,
        "dispatch_timeout_s": [0, -1, 120.1, NAN, INF, True, None],
        "audio_sample_rate": [8000, 44100, 0, -24000, "24k", True, None, 24000.5],
        "video_delay_ms": [-1, 300.1, NAN, INF, True, "late"],
        "max_duration_s": [0, -5, 86400.1, NAN, INF, True, None],
        "idle_timeout_s": [0, -1, NAN, INF, True, "never"],
        "user_absent_timeout_s": [9.9, 0, -1, NAN, INF, True, None],
        "first_message": ["hello", 5, {"text": "a", "instructions": "b"}, {"bogus": 1}],
        "tool_protection": [True, "all", {"max_hold_s": 0}, {"bogus": 1}],
        "input_during_protection": ["queue", "", None, 0],
        "goodbye": ["", "x" * 501, 5, ["bye"]],
        "background": ["#12", "#zzzzzz", (0, 0, 256), (1, 2), 5, "/no/such/background.png"],
    },
}


def test_every_field_has_invalid_cases():
    for model, cases in INVALID.items():
        missing = set(model.model_fields) - set(cases)
        assert not missing, f"{model.__name__}: no invalid cases for {sorted(missing)}"


CASES = [
    pytest.param(model, field, value, id=f"{model.__name__}.{field}={value!r}"[:90])
    for model, fields in INVALID.items()
    for field, values in fields.items()
    for value in values
]


@pytest.mark.parametrize("model,field,value", CASES)
def test_invalid_value_is_rejected_naming_the_field(model, field, value):
    with pytest.raises(ValidationError) as info:
        model(**{field: value})
    named = {str(part) for err in info.value.errors() for part in err["loc"]}
    assert field in named or field in str(info.value), str(info.value)


@pytest.mark.parametrize(
    "field,value",
    [(f, v) for f, vs in INVALID[C.AvatarSessionOptions].items() for v in vs[:2]],
)
def test_avatar_session_rejects_it_at_construction(field, value):
    with pytest.raises(ValidationError, match=field):
        AvatarSession(**{field: value})


def test_the_documented_shortcuts_and_defaults_still_validate():
    opts = C.AvatarSessionOptions(video_quality="low", video_codec="h264", idle_timeout_s=None)
    assert (opts.video.width, opts.video.codec, opts.idle_timeout_s) == (640, "h264", None)
    with pytest.raises(ValidationError, match="quality"):
        C.AvatarSessionOptions(video_quality="8k")
    with pytest.raises(ValidationError, match="not_an_option"):
        C.AvatarSessionOptions(not_an_option=1)
    for model in INVALID:
        model()  # every default is valid
