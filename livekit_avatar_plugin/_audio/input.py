"""Audio arriving at the avatar, checked and made safe before anything else touches it.

Speech reaches the avatar from the agent's TTS, over the network, from code we do not
control. Whatever arrives, the avatar must either play a sanitised version of it or
reject it with an error that names the problem; never crash its frame loop or hang the
agent waiting for playback. The rules:

* sample rates 8-48 kHz (any integer rate); outside that range: :class:`AudioInputError`;
* 1-8 interleaved channels, downmixed to mono; a payload that is not a whole number of
  samples per channel: :class:`AudioInputError`;
* int16, int32 or float samples; floats are clipped to [-1, 1] and NaN/inf become silence;
* empty chunks are fine (and ignored downstream).
"""

from __future__ import annotations

import numpy as np
from livekit import rtc

from .._errors import AvatarError

MIN_RATE = 8000
MAX_RATE = 48000
MAX_CHANNELS = 8


class AudioInputError(AvatarError, ValueError):
    """Audio that cannot be played as given; the message names the problem."""


def _whole_number(value: object, what: str, lo: int, hi: int, unit: str) -> int:
    try:
        number = int(value)  # type: ignore[call-overload]
        exact = number == float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):
        raise AudioInputError(f"{what} {value!r} is not a number") from None
    if not exact or not lo <= number <= hi:
        raise AudioInputError(
            f"{what} {value!r} is not supported: the avatar takes whole numbers from {lo} to "
            f"{hi} {unit}"
        )
    return number


def check_rate(sample_rate: object) -> int:
    """The rate as an int, or :class:`AudioInputError` naming what is wrong with it."""
    return _whole_number(sample_rate, "sample rate", MIN_RATE, MAX_RATE, "Hz")


def check_channels(num_channels: object) -> int:
    return _whole_number(num_channels, "channel count", 1, MAX_CHANNELS, "interleaved channels")


def to_mono_int16(samples: np.ndarray, num_channels: int = 1) -> np.ndarray:
    """Interleaved samples (int16, int32 or float) -> mono int16, sanitised."""
    channels = check_channels(num_channels)
    a = np.asarray(samples).reshape(-1)
    if a.size % channels:
        raise AudioInputError(
            f"{a.size} samples do not divide into {channels} channels: the payload is "
            "truncated or its channel count is wrong"
        )
    if a.dtype == np.int16:
        if channels == 1:
            return a
        mixed = a.reshape(-1, channels).mean(axis=1)
        return np.round(mixed).astype(np.int16)
    if np.issubdtype(a.dtype, np.integer):
        scale = float(2 ** (8 * a.dtype.itemsize - 1))
        x = a.astype(np.float64) / scale
    elif np.issubdtype(a.dtype, np.floating):
        x = a.astype(np.float64)
        if x.size and not np.isfinite(x).all():
            x = np.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0)
    else:
        raise AudioInputError(f"audio samples of type {a.dtype} are not supported")
    if channels > 1:
        x = x.reshape(-1, channels).mean(axis=1)
    return np.round(np.clip(x, -1.0, 1.0) * 32767.0).astype(np.int16)


def frame_to_mono(frame: rtc.AudioFrame) -> tuple[np.ndarray, int]:
    """An ``rtc.AudioFrame`` -> (mono int16 samples, sample rate), or AudioInputError."""
    rate = check_rate(frame.sample_rate)
    channels = check_channels(frame.num_channels)
    data = np.frombuffer(frame.data, dtype=np.int16)
    expected = frame.samples_per_channel * channels
    if data.size != expected:
        raise AudioInputError(
            f"frame says {frame.samples_per_channel} samples x {channels} channels but "
            f"carries {data.size}"
        )
    return to_mono_int16(data, channels), rate


def dc_free(chunk: np.ndarray) -> np.ndarray:
    """The chunk without its mean: a DC offset is inaudible and must not look like speech."""
    if chunk.size == 0:
        return chunk.astype(np.float32)
    x = chunk.astype(np.float32)
    return x - np.float32(x.mean())
