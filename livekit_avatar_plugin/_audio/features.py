"""Audio front end of the lip-sync model, in plain numpy (no torchaudio).

Everything here is *streamable exactly*: the streaming classes produce the same
numbers as running them once over the whole signal, whatever the chunking.

Pipeline: any rate 8-48 kHz -> windowed-sinc resampler to 16 kHz -> log-mel
frames (512-sample Hann windows, 40 mel bands): one frame every
10 ms, frame ``t`` centred on sample ``t * HOP``.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

from .input import MAX_RATE, MIN_RATE, check_rate  # noqa: F401 - re-exported for lipsync

SAMPLE_RATE = 16000
HOP = 160  # 10 ms -> 100 frames per second
WIN = 512  # 32 ms Hann window, centred on the frame time
N_MELS = 40
FMIN = 50.0
FMAX = 7600.0
LOG_FLOOR = 1e-10

# Resampler: Kaiser-windowed sinc with this many zero crossings each side.
_ZEROS = 8
_KAISER_BETA = 7.0
_ROLLOFF = 0.94


# ---------------------------------------------------------------------------
# resampling


@lru_cache(maxsize=16)
def _resample_table(rate: int) -> tuple[int, int, int, np.ndarray]:
    """Polyphase table for ``rate`` -> 16 kHz.

    Output sample ``j`` sits at input position ``j * p / q``; with ``i0 = (j*p)//q``
    and phase ``(j*p) % q`` it is ``sum_m table[phase, m] * x[i0 - H + 1 + m]``.
    Returns (p, q, H, table[q, 2H]).
    """
    g = math.gcd(rate, SAMPLE_RATE)
    p, q = rate // g, SAMPLE_RATE // g
    # cutoff relative to the input Nyquist
    cutoff = _ROLLOFF * min(1.0, SAMPLE_RATE / rate)
    half = int(math.ceil(_ZEROS / cutoff))
    m = np.arange(2 * half, dtype=np.float64)
    frac = np.arange(q, dtype=np.float64)[:, None] / q
    d = frac + (half - 1) - m[None, :]  # distance (input samples) from tap to position
    w = np.i0(_KAISER_BETA * np.sqrt(np.clip(1.0 - (d / half) ** 2, 0.0, None))) / np.i0(_KAISER_BETA)
    w[np.abs(d) >= half] = 0.0
    table = cutoff * np.sinc(cutoff * d) * w
    return p, q, half, table.astype(np.float32)


def resample_lookahead_s(rate: int) -> float:
    if rate == SAMPLE_RATE:
        return 0.0
    return _resample_table(rate)[2] / rate



def _drop_before(buf: np.ndarray, buf_start: int, keep_from: int) -> tuple[np.ndarray, int]:
    """Forget buffered samples before absolute index ``keep_from`` (no longer needed)."""
    drop = keep_from - buf_start
    if drop > 0:
        return buf[drop:], keep_from
    return buf, buf_start

class StreamResampler:
    """Exact streaming resampler ``rate`` -> 16 kHz (identity at 16 kHz)."""

    def __init__(self, rate: int) -> None:
        self.rate = check_rate(rate)
        self._identity = self.rate == SAMPLE_RATE
        if not self._identity:
            self._p, self._q, self._h, self._table = _resample_table(self.rate)
        self.reset()

    def reset(self) -> None:
        self._n_in = 0  # input samples received
        self._n_out = 0  # output samples emitted
        # buffer holds input samples from absolute index self._buf_start on
        if not self._identity:
            self._buf = np.zeros(self._h, dtype=np.float32)  # zeros before t=0
            self._buf_start = -self._h

    def total_out(self) -> int:
        """Output samples the whole input so far maps onto."""
        return -(-self._n_in * SAMPLE_RATE // self.rate)

    def _emit(self, n_avail: int, limit: int | None) -> np.ndarray:
        # output j needs input up to i0 + H  with i0 = (j*p)//q  ->  i0 + H < n_avail
        p, q, h = self._p, self._q, self._h
        j_max = ((n_avail - h) * q - 1) // p  # largest j with (j*p)//q <= n_avail - h - 1
        end = j_max + 1
        if limit is not None:
            end = min(end, limit)
        if end <= self._n_out:
            return np.zeros(0, dtype=np.float32)
        n = end - self._n_out
        out = np.empty(n, dtype=np.float32)
        # row r of `win` is the 2H input samples starting at absolute index buf_start + r
        buf = self._buf
        # overlapping rows as a view; np.ndarray over the buffer costs ~1 us, sliding_window_view ~25 us
        win = np.ndarray((len(buf) - 2 * h + 1, 2 * h), np.float32, buffer=buf, strides=(buf.strides[0],) * 2)
        if q <= 16:
            # few phases: each phase is a strided view (no gather), one mat-vec per phase
            for ph_j in range(min(q, n)):
                j0 = self._n_out + ph_j
                row0 = (j0 * p) // q - h + 1 - self._buf_start
                cnt = (n - ph_j + q - 1) // q
                out[ph_j::q] = win[row0 : row0 + (cnt - 1) * p + 1 : p] @ self._table[(j0 * p) % q]
        else:
            js = np.arange(self._n_out, end, dtype=np.int64)
            num = js * p
            rows = num // q - h + 1 - self._buf_start
            phase = num % q
            block = 4096
            for s in range(0, n, block):
                out[s : s + block] = np.einsum("ij,ij->i", win[rows[s : s + block]], self._table[phase[s : s + block]])
        self._n_out = end
        # drop input no longer needed: next output needs from i0(n_out) - H + 1
        self._buf, self._buf_start = _drop_before(
            self._buf, self._buf_start, (self._n_out * p) // q - h + 1
        )
        return out

    def push(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float32)
        self._n_in += len(x)
        if self._identity:
            self._n_out += len(x)
            return x
        self._buf = np.concatenate([self._buf, x]) if len(self._buf) else x.copy()
        return self._emit(self._n_in, None)

    def flush(self) -> np.ndarray:
        """Emit the remaining output samples, treating the future as silence."""
        total = self.total_out()
        if self._identity:
            return np.zeros(0, dtype=np.float32)
        pad = np.zeros(2 * self._h + self._p + 2, dtype=np.float32)
        self._buf = np.concatenate([self._buf, pad])
        return self._emit(self._n_in + len(pad), total)


def resample(x: np.ndarray, rate: int) -> np.ndarray:
    """Offline resampling of a whole mono signal to 16 kHz (same numbers as streaming)."""
    r = StreamResampler(rate)
    a = r.push(x)
    b = r.flush()
    return np.concatenate([a, b])


# ---------------------------------------------------------------------------
# log-mel


def _hz_to_mel(f):
    return 2595.0 * np.log10(1.0 + np.asarray(f, dtype=np.float64) / 700.0)


def _mel_to_hz(m):
    return 700.0 * (10.0 ** (np.asarray(m, dtype=np.float64) / 2595.0) - 1.0)


@lru_cache(maxsize=1)
def mel_filterbank() -> np.ndarray:
    """[WIN//2+1, N_MELS] triangular filters (HTK mel scale), float32."""
    n_bins = WIN // 2 + 1
    freqs = np.arange(n_bins) * SAMPLE_RATE / WIN
    mels = np.linspace(_hz_to_mel(FMIN), _hz_to_mel(FMAX), N_MELS + 2)
    edges = _mel_to_hz(mels)
    fb = np.zeros((n_bins, N_MELS), dtype=np.float64)
    for k in range(N_MELS):
        lo, mid, hi = edges[k], edges[k + 1], edges[k + 2]
        up = (freqs - lo) / (mid - lo)
        down = (hi - freqs) / (hi - mid)
        fb[:, k] = np.clip(np.minimum(up, down), 0.0, None)
    # slaney-style area normalisation keeps bands comparable
    fb *= (2.0 / (edges[2:] - edges[:-2]))[None, :] * 100.0
    return fb.astype(np.float32)


@lru_cache(maxsize=1)
def _window() -> np.ndarray:
    return np.hanning(WIN + 1)[:-1].astype(np.float32)


def logmel_frames(frames: np.ndarray) -> np.ndarray:
    """[n, WIN] raw sample windows -> [n, N_MELS] float32 log10 mel power."""
    spec = np.fft.rfft(frames * _window(), axis=1)
    power = (spec.real**2 + spec.imag**2).astype(np.float32) * (4.0 / (WIN * WIN))
    mel = power @ mel_filterbank()
    return np.log10(mel + LOG_FLOOR).astype(np.float32)


def silence_frame() -> np.ndarray:
    return logmel_frames(np.zeros((1, WIN), dtype=np.float32))[0]


class StreamLogMel:
    """Streaming log-mel at 16 kHz: frame ``t`` is ready when sample ``t*HOP + WIN/2`` arrived."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        half = WIN // 2
        self._buf = np.zeros(half, dtype=np.float32)  # zeros before t=0
        self._buf_start = -half
        self._n = 0  # samples received
        self._t = 0  # next frame index

    @property
    def frames_emitted(self) -> int:
        return self._t

    def total_frames(self) -> int:
        return -(-self._n // HOP)

    @staticmethod
    def complete_frames(n_samples: int) -> int:
        """Frames whose analysis window the first ``n_samples`` samples fill."""
        return (n_samples - WIN // 2) // HOP + 1 if n_samples >= WIN // 2 else 0

    def _emit(self, n_avail: int, limit: int | None) -> np.ndarray:
        half = WIN // 2
        t_end = self.complete_frames(n_avail)
        if limit is not None:
            t_end = min(t_end, limit)
        if t_end <= self._t:
            return np.zeros((0, N_MELS), dtype=np.float32)
        first = self._t * HOP - half - self._buf_start
        buf = self._buf[first:]
        # the frames' windows as a strided view of the buffer (no index gather)
        frames = np.ndarray((t_end - self._t, WIN), np.float32, buffer=buf, strides=(HOP * buf.strides[0], buf.strides[0]))
        out = logmel_frames(frames)
        self._t = t_end
        self._buf, self._buf_start = _drop_before(self._buf, self._buf_start, self._t * HOP - half)
        return out

    def push(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float32)
        self._n += len(x)
        self._buf = np.concatenate([self._buf, x])
        return self._emit(self._n, None)

    def flush(self, extra_frames: int = 0) -> np.ndarray:
        """Emit the remaining frames of the signal plus ``extra_frames`` of trailing silence."""
        limit = self.total_frames() + extra_frames
        need = (limit - 1) * HOP + WIN // 2 + 1
        pad = max(0, need - self._n)
        if pad:
            self._buf = np.concatenate([self._buf, np.zeros(pad, dtype=np.float32)])
        return self._emit(self._n + pad, limit)


def logmel(x16: np.ndarray, extra_frames: int = 0) -> np.ndarray:
    """Offline log-mel of a 16 kHz signal: [ceil(len/HOP) + extra_frames, N_MELS]."""
    s = StreamLogMel()
    a = s.push(x16)
    b = s.flush(extra_frames)
    return np.concatenate([a, b])


def to_mono_float(pcm, *, warn=None) -> np.ndarray:
    """int16/int32/float, mono [n] or [n, ch] -> float32 mono in [-1, 1]-ish.

    NaN/inf are replaced by 0 (``warn(msg)`` is called when that happens).
    """
    a = np.asarray(pcm)
    if a.ndim == 2:
        if a.shape[1] > 8 and a.shape[0] <= 8:  # [ch, n] given: accept it
            a = a.T
        if np.issubdtype(a.dtype, np.integer):
            a = a.astype(np.float32)
            a = a.mean(axis=1, dtype=np.float32)
            scale = _int_scale(np.asarray(pcm).dtype)
            a = a / scale
        else:
            a = a.astype(np.float32).mean(axis=1, dtype=np.float32)
    elif a.ndim == 1:
        if np.issubdtype(a.dtype, np.integer):  # always finite and in range: the common, per-frame case
            scale = _int_scale(a.dtype)
            a = a.astype(np.float32)
            a *= 1.0 / scale
            return a
        else:
            a = a.astype(np.float32, copy=False)
    elif a.ndim == 0:
        a = a.reshape(1).astype(np.float32)
    else:
        raise ValueError(f"audio must be [n] or [n, channels], got shape {a.shape}")
    if a.size and not np.isfinite(a).all():
        if warn is not None:
            warn("audio contains NaN/inf samples; they were replaced by silence")
        a = np.nan_to_num(a, nan=0.0, posinf=0.0, neginf=0.0)
    return np.clip(a, -4.0, 4.0) if a.size else a


def _int_scale(dtype) -> float:
    dtype = np.dtype(dtype)
    if dtype == np.uint8:
        raise ValueError("8-bit unsigned PCM is not supported; convert to int16")
    return float(2 ** (8 * dtype.itemsize - 1))
