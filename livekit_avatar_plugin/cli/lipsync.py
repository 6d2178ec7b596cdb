"""``livekit-avatar lipsync INPUT.wav [--json] [--plot out.png]``: run the lip-sync model on a WAV file."""

from __future__ import annotations

import argparse
import json
import struct
import sys
import wave
from pathlib import Path

import numpy as np

from .._errors import AvatarError


class WavError(AvatarError):
    pass


def read_wav(path: str | Path) -> tuple[np.ndarray, int]:
    """Read a PCM WAV (8/16/24/32-bit, any rate, mono/stereo) with the stdlib ``wave``.

    Returns (float32 samples [n] or [n, channels] in [-1, 1], sample_rate).
    """
    p = Path(path)
    if not p.is_file():
        raise WavError(f"no such file: {p}")
    try:
        with wave.open(str(p), "rb") as w:
            ch, sw, sr, n = w.getnchannels(), w.getsampwidth(), w.getframerate(), w.getnframes()
            raw = w.readframes(n)
    except (wave.Error, EOFError, OSError, RuntimeError, ValueError, struct.error) as exc:
        raise WavError(f"{p}: not a readable PCM WAV file ({str(exc) or 'truncated or malformed header'})") from None
    if ch < 1 or sw not in (1, 2, 3, 4) or sr <= 0:
        raise WavError(f"{p}: unsupported WAV layout (channels={ch}, sample width={sw} bytes, rate={sr})")
    n = len(raw) // (sw * ch)
    raw = raw[: n * sw * ch]
    if sw == 1:
        a = (np.frombuffer(raw, dtype=np.uint8).astype(np.float32) - 128.0) / 128.0
    elif sw == 2:
        a = np.frombuffer(raw, dtype="<i2").astype(np.float32) / 32768.0
    elif sw == 3:
        b = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 3).astype(np.int32)
        v = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
        v = np.where(v >= 1 << 23, v - (1 << 24), v)
        a = v.astype(np.float32) / float(1 << 23)
    else:
        a = (np.frombuffer(raw, dtype="<i4").astype(np.float64) / float(1 << 31)).astype(np.float32)
    if ch > 1:
        a = a.reshape(-1, ch)
    return a, sr


def _plot(path: Path, audio: np.ndarray, sr: int, frames: np.ndarray, fps: float, channels) -> None:
    import matplotlib  # dev/train extra only

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    mono = audio if audio.ndim == 1 else audio.mean(axis=1)
    fig, ax = plt.subplots(2, 1, figsize=(12, 5), sharex=True, gridspec_kw={"height_ratios": [1, 1.6]})
    ax[0].plot(np.arange(len(mono)) / sr, mono, lw=0.4, color="0.3")
    ax[0].set_ylabel("waveform")
    t = np.arange(len(frames)) / fps
    for i, name in enumerate(channels):
        ax[1].plot(t, frames[:, i], lw=1.1, label=name)
    ax[1].set_ylim(-0.02, 1.02)
    ax[1].set_xlabel("time (s)")
    ax[1].set_ylabel("mouth channel")
    ax[1].legend(loc="upper right", fontsize=8, ncol=len(channels))
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def run(args: argparse.Namespace) -> int:
    try:
        audio, sr = read_wav(args.input)
    except WavError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    from .._audio.lipsync import LipSyncModel

    try:
        model = LipSyncModel.load(args.model)
        frames = model.infer(audio, sr)
    except (ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.plot:
        _plot(Path(args.plot), audio, sr, frames, model.fps, model.channels)
    if args.json:
        doc = {
            "fps": float(model.fps),
            "channels": list(model.channels),
            "frames": [[round(float(v), 4) for v in row] for row in frames],
        }
        sys.stdout.write(json.dumps(doc) + "\n")
    elif not args.plot:
        dur = len(audio) / sr
        print(f"{args.input}: {dur:.2f} s at {sr} Hz -> {len(frames)} frames at {model.fps:g} fps")
        for i, name in enumerate(model.channels):
            col = frames[:, i] if len(frames) else np.zeros(1)
            print(f"  {name:12s} mean {col.mean():.3f}  max {col.max():.3f}")
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "lipsync",
        help="audio -> mouth channels with the lip-sync model",
        description="Run the lip-sync model on a PCM WAV file (8/16/24/32-bit, 8-48 kHz, mono or stereo).",
    )
    p.add_argument("input", help="input .wav file")
    p.add_argument("--json", action="store_true", help='print {"fps", "channels", "frames"} as JSON')
    p.add_argument("--plot", metavar="OUT.png", help="write a PNG of the waveform and the mouth channels")
    p.add_argument("--model", default=None, help="ONNX model (default: models/lipsync/lipsync.onnx)")
    p.set_defaults(func=run)
