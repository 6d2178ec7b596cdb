"""Runtime contract of livekit_avatar_plugin._audio.lipsync (no timing asserts)."""

from __future__ import annotations

import logging
import threading

import numpy as np
import pytest

from livekit_avatar_plugin._audio import features as F
from livekit_avatar_plugin._audio.lipsync import MOUTH_CHANNELS, LipSyncModel

RATES = (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000)


@pytest.fixture(scope="module")
def model() -> LipSyncModel:
    return LipSyncModel.load()


def _speechlike(sr: int, seconds: float, seed: int = 0) -> np.ndarray:
    """Bursts of harmonic 'vowels' with gaps: enough to move the mouth."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(sr * seconds)) / sr
    f0 = 120 + 30 * np.sin(2 * np.pi * 0.7 * t)
    ph = 2 * np.pi * np.cumsum(f0) / sr
    x = sum(np.sin(k * ph) / k for k in range(1, 12))
    env = (np.sin(2 * np.pi * 3.1 * t) > -0.2).astype(float)
    return (0.3 * x * env + 0.003 * rng.standard_normal(len(t))).astype(np.float32)


def test_contract_attributes(model):
    assert MOUTH_CHANNELS[:3] == ("jaw_open", "lips_closed", "lip_round")
    assert model.channels == MOUTH_CHANNELS
    assert model.fps >= 50
    assert 0 < model.lookahead_s <= 0.08
    assert LipSyncModel.load() is model  # loaded once per process


@pytest.mark.parametrize("sr", RATES)
def test_every_rate_shape_range(model, sr):
    x = _speechlike(sr, 1.37)
    out = model.infer(x, sr)
    assert out.dtype == np.float32
    assert out.shape == (model.frames_for(len(x), sr), len(model.channels))
    assert out.shape[0] == int(np.ceil(1.37 * model.fps - 1e-6))
    assert np.isfinite(out).all() and out.min() >= 0.0 and out.max() <= 1.0


@pytest.mark.parametrize("sr", (8000, 16000, 22050, 44100, 48000))
def test_streaming_equals_offline_random_chunks(model, sr):
    rng = np.random.default_rng(sr)
    x = _speechlike(sr, 3.1, seed=sr)
    ref = model.infer(x, sr)
    for trial in range(3):
        s = model.stream()
        parts, i = [], 0
        while i < len(x):
            k = int(rng.integers(1, sr // 5)) if trial else int(rng.integers(1, 64))
            parts.append(s.push(x[i : i + k], sr))
            assert parts[-1].ndim == 2 and parts[-1].shape[1] == len(model.channels)
            i += k
        parts.append(s.flush())
        got = np.concatenate(parts)
        assert got.shape == ref.shape
        assert np.abs(got - ref).max() < 1e-3


def test_stream_reuse_after_flush_and_reset(model):
    x = _speechlike(16000, 1.0)
    ref = model.infer(x, 16000)
    s = model.stream()
    s.push(x[:7000], 16000)
    s.reset()  # interruption drops everything
    a = np.concatenate([s.push(x, 16000), s.flush()])
    b = np.concatenate([s.push(x, 16000), s.flush()])  # flush starts a fresh segment
    assert np.abs(a - ref).max() < 1e-3 and np.abs(b - ref).max() < 1e-3


def test_frames_arrive_within_lookahead(model):
    sr = 16000
    x = _speechlike(sr, 2.0)
    s = model.stream()
    got = 0
    step = 320
    for i in range(0, len(x), step):
        got += len(s.push(x[i : i + step], sr))
        heard = (i + step) / sr
        # every frame whose time + lookahead has been pushed is out
        assert got >= int((heard - model.lookahead_s) * model.fps)
        assert got <= int(np.ceil(heard * model.fps))


def test_int16_float_stereo_agree(model):
    sr = 24000
    x = _speechlike(sr, 1.2)
    i16 = np.round(x * 32767).astype(np.int16)
    a = model.infer(x, sr)
    b = model.infer(i16, sr)
    c = model.infer(np.stack([i16, i16], axis=1), sr)
    d = model.infer(np.stack([x, x], axis=1).astype(np.float64), sr)
    # int16 rounding can move an int8 activation one step: quantisation noise, not a different mouth
    assert np.abs(a - b).max() < 8e-2
    assert np.abs(a - b).mean() < 1e-2
    assert np.abs(b - c).max() < 1e-5
    assert np.abs(a - d).max() < 1e-4


def test_silence_is_neutral(model):
    for sr in (8000, 16000, 48000):
        out = model.infer(np.zeros(sr * 2, np.int16), sr)
        assert out[:, 0].max() < 0.15  # jaw closed
        assert out[:, model.channels.index("lip_round")].max() < 0.3
        assert out[:, model.channels.index("lip_spread")].max() < 0.3


def test_zero_length(model):
    for sr in (8000, 16000, 48000):
        assert model.infer(np.zeros(0, np.float32), sr).shape == (0, len(model.channels))
        s = model.stream()
        assert s.push(np.zeros(0, np.int16), sr).shape == (0, len(model.channels))
        assert s.push(np.zeros((0, 2), np.int16), sr).shape == (0, len(model.channels))
        assert s.flush().shape == (0, len(model.channels))


def test_nan_inf_sanitised_with_one_warning(model, caplog):
    x = _speechlike(16000, 1.0)
    x[100:200] = np.nan
    x[5000] = np.inf
    x[6000] = -np.inf
    s = model.stream()
    with caplog.at_level(logging.WARNING, logger="livekit_avatar_plugin._audio.lipsync"):
        out = np.concatenate([s.push(x[:8000], 16000), s.push(x[8000:], 16000), s.push(x[:300], 16000), s.flush()])
    assert np.isfinite(out).all() and out.min() >= 0 and out.max() <= 1
    warns = [r for r in caplog.records if r.levelno == logging.WARNING and "NaN" in r.getMessage()]
    assert len(warns) == 1


@pytest.mark.parametrize("bad", (0, 4000, 7999, 48001, 96000, 44100.5))
def test_unsupported_rates_raise(model, bad):
    with pytest.raises(ValueError, match=str(bad).split(".")[0]):
        model.infer(np.zeros(100, np.float32), bad)
    with pytest.raises(ValueError, match=str(bad).split(".")[0]):
        model.stream().push(np.zeros(100, np.float32), bad)


def test_thread_safe_sharing(model):
    x = _speechlike(16000, 1.5)
    ref = model.infer(x, 16000)
    errs = []

    def work(seed):
        rng = np.random.default_rng(seed)
        s = model.stream()
        parts, i = [], 0
        while i < len(x):
            k = int(rng.integers(50, 3000))
            parts.append(s.push(x[i : i + k], 16000))
            i += k
        parts.append(s.flush())
        errs.append(float(np.abs(np.concatenate(parts) - ref).max()))

    ts = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert len(errs) == 4 and max(errs) < 1e-3


def test_resampler_exact_streaming_and_passband():
    rng = np.random.default_rng(3)
    for sr in (8000, 22050, 44100, 48000):
        t = np.arange(sr) / sr
        x = np.sin(2 * np.pi * 1000 * t).astype(np.float32)
        y = F.resample(x, sr)
        assert len(y) == 16000
        ref = np.sin(2 * np.pi * 1000 * np.arange(16000) / 16000)
        assert np.abs(y[200:-200] - ref[200:-200]).max() < 5e-3
        r = F.StreamResampler(sr)
        parts, i = [], 0
        while i < len(x):
            k = int(rng.integers(1, 999))
            parts.append(r.push(x[i : i + k]))
            i += k
        parts.append(r.flush())
        assert np.array_equal(np.concatenate(parts), y)
