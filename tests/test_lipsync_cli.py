"""`livekit-avatar lipsync` CLI contract, run as a subprocess with this interpreter."""

from __future__ import annotations

import json
import subprocess
import sys
import wave
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "livekit_avatar_plugin.cli", "lipsync", *args],
        capture_output=True, text=True, cwd=ROOT, timeout=120,
    )  # fmt: skip


def _write(path: Path, x: np.ndarray, sr: int, width: int, channels: int = 1) -> None:
    x = np.clip(x, -1, 1)
    if channels > 1:
        x = np.stack([x] * channels, axis=1)
    if width == 1:
        raw = np.round(x * 127 + 128).astype(np.uint8).tobytes()
    elif width == 2:
        raw = np.round(x * 32767).astype("<i2").tobytes()
    elif width == 3:
        v = np.round(x * (2**23 - 1)).astype(np.int32).reshape(-1)
        b = np.stack([v & 255, (v >> 8) & 255, (v >> 16) & 255], axis=1).astype(np.uint8)
        raw = b.tobytes()
    else:
        raw = np.round(x * (2**31 - 1)).astype("<i4").tobytes()
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(width)
        w.setframerate(sr)
        w.writeframes(raw)


def _tone(sr: int, seconds: float) -> np.ndarray:
    t = np.arange(int(sr * seconds)) / sr
    return (0.4 * np.sin(2 * np.pi * 180 * t) * (np.sin(2 * np.pi * 2 * t) > 0)).astype(np.float64)


@pytest.mark.parametrize("sr,width,channels", [(16000, 2, 1), (44100, 3, 2), (8000, 4, 1), (22050, 1, 2), (48000, 2, 2)])
def test_json_contract(tmp_path, sr, width, channels):
    wav = tmp_path / "in.wav"
    _write(wav, _tone(sr, 1.25), sr, width, channels)
    res = _run(str(wav), "--json")
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert list(doc) == ["fps", "channels", "frames"]
    assert isinstance(doc["fps"], float) and doc["fps"] >= 50
    assert doc["channels"][:3] == ["jaw_open", "lips_closed", "lip_round"]
    assert len(doc["frames"]) == int(np.ceil(1.25 * doc["fps"] - 1e-6))
    assert all(len(f) == len(doc["channels"]) and all(0.0 <= v <= 1.0 for v in f) for f in doc["frames"])


def test_plot(tmp_path):
    pytest.importorskip("matplotlib")
    wav = tmp_path / "in.wav"
    _write(wav, _tone(16000, 1.0), 16000, 2)
    out = tmp_path / "plot.png"
    res = _run(str(wav), "--plot", str(out))
    assert res.returncode == 0, res.stderr
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_missing_file(tmp_path):
    res = _run(str(tmp_path / "nope.wav"), "--json")
    assert res.returncode != 0
    assert "nope.wav" in res.stderr and res.stdout == ""


def test_corrupt_file(tmp_path):
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF\x10\x00\x00\x00WAVEjunkjunkjunk")
    res = _run(str(bad), "--json")
    assert res.returncode != 0
    assert "bad.wav" in res.stderr and "Traceback" not in res.stderr


def test_unsupported_rate(tmp_path):
    wav = tmp_path / "hi.wav"
    _write(wav, _tone(96000, 0.2), 96000, 2)
    res = _run(str(wav), "--json")
    assert res.returncode != 0 and "96000" in res.stderr
