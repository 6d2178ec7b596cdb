"""Prompts, utterance generation per voice family, and augmentation.

All randomness is seeded; the same seed gives the same data.
"""

from __future__ import annotations

import math
import os
import re
import subprocess
import tempfile
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .._audio import features as F
from . import phonemes as P
from . import voices as V

FORTUNE_DIR = Path("/usr/share/games/fortunes")
_FALLBACK_PROMPTS = [
    "The quick brown fox jumps over the lazy dog.",
    "Please pass me the map before the boat leaves.",
    "Bob bought a big blue balloon for his mother.",
    "Why would you move the old oak table today?",
    "She sells sea shells by the sea shore.",
    "My brother plays the piano every morning.",
    "Put the paper in the box and bring it back.",
    "How about a cup of coffee and a warm bun?",
    "We should meet at noon by the museum.",
    "A bright moon rose above the quiet harbour.",
    "Maybe you could open the window a bit.",
    "The purple bird sang a simple song.",
]


def load_prompts() -> list[str]:
    """Sentences from Debian's fortunes (deduplicated, 3-18 words), or a small fallback."""
    out: set[str] = set()
    if FORTUNE_DIR.is_dir():
        for f in sorted(FORTUNE_DIR.iterdir()):
            if f.suffix or f.name.startswith("."):
                continue
            try:
                text = f.read_text(encoding="latin-1")
            except OSError:
                continue
            for block in text.split("\n%\n"):
                block = " ".join(block.split())
                for sent in re.split(r"(?<=[.!?])\s+", block):
                    sent = sent.strip()
                    words = sent.split()
                    if not 3 <= len(words) <= 18:
                        continue
                    if not re.fullmatch(r"[A-Za-z][A-Za-z ,.'!?;:-]*", sent):
                        continue
                    out.add(sent)
    prompts = sorted(out) or list(_FALLBACK_PROMPTS)
    return prompts


def split_prompts(seed: int = 1234) -> tuple[list[str], list[str]]:
    """Disjoint (train, eval) prompt lists; eval gets 10% (at least 12)."""
    prompts = load_prompts()
    rng = np.random.default_rng(seed)
    idx = rng.permutation(len(prompts))
    n_eval = max(12, len(prompts) // 10) if len(prompts) > 24 else len(prompts) // 2
    ev = [prompts[i] for i in idx[:n_eval]]
    tr = [prompts[i] for i in idx[n_eval:]]
    return tr, ev


@dataclass
class Utterance:
    family: str
    voice: str
    text: str
    audio: np.ndarray  # float32 mono
    sr: int
    segs: list  # canonical (phone, start, end), stop closures moved

    @property
    def duration(self) -> float:
        return len(self.audio) / self.sr


def _voice_params(family: str, rng: np.random.Generator) -> dict:
    if family == "espeak":
        var = V.ESPEAK_VARIANTS[rng.integers(len(V.ESPEAK_VARIANTS))]
        base = V.ESPEAK_VOICES[rng.integers(len(V.ESPEAK_VOICES))]
        return {
            "voice": base + (f"+{var}" if var else ""),
            "rate": int(rng.integers(110, 270)),
            "pitch": int(rng.integers(15, 85)),
            "prange": int(rng.integers(20, 90)),
        }
    if family == "flite":
        return {"voice": V.FLITE_VOICES[rng.integers(len(V.FLITE_VOICES))], "stretch": float(rng.uniform(0.8, 1.25))}
    if family == "festival":
        return {"voice": V.FESTIVAL_VOICES[rng.integers(len(V.FESTIVAL_VOICES))], "stretch": float(rng.uniform(0.8, 1.3))}
    if family == "piper":
        return {
            "voice": "joe",
            "length_scale": float(rng.uniform(0.8, 1.3)),
            "noise_scale": float(rng.uniform(0.4, 0.8)),
            "noise_w": float(rng.uniform(0.5, 1.0)),
        }
    raise ValueError(family)


def synthesize(family: str, texts: list[str], seed: int, workdir: str | None = None) -> list[Utterance]:
    """Synthesise ``texts`` with random voices of ``family``; failures are skipped."""
    rng = np.random.default_rng(seed)
    params = [_voice_params(family, rng) for _ in texts]
    raw: list = []
    if family == "festival":
        with tempfile.TemporaryDirectory(dir=workdir) as d:
            raw = V.synth_festival_batch([(t, p["voice"], p["stretch"]) for t, p in zip(texts, params)], d)
    else:
        for t, p in zip(texts, params):
            try:
                if family == "espeak":
                    raw.append(V.synth_espeak(t, p["voice"], p["rate"], p["pitch"], p["prange"]))
                elif family == "flite":
                    raw.append(V.synth_flite(t, p["voice"], p["stretch"]))
                else:
                    raw.append(V.synth_piper(t, p["length_scale"], p["noise_scale"], p["noise_w"]))
            except Exception:  # noqa: BLE001 - a bad prompt must not stop the run
                raw.append(None)
    out = []
    for t, p, r in zip(texts, params, raw):
        if r is None:
            continue
        audio, sr, segs = r
        if len(audio) < sr * 0.3 or not segs or np.abs(audio).max() < 1e-4:
            continue
        segs = P.move_stop_closures(segs, audio, sr)
        voice = p["voice"] if family != "espeak" else f"{p['voice']}@{p['rate']}/{p['pitch']}"
        out.append(Utterance(family, voice, t, audio.astype(np.float32), sr, segs))
    return out


# ---------------------------------------------------------------------------
# augmentation


def pad_utterance(u: Utterance, lead_s: float, tail_s: float) -> Utterance:
    a = np.concatenate([np.zeros(int(lead_s * u.sr), np.float32), u.audio, np.zeros(int(tail_s * u.sr), np.float32)])
    sh = int(lead_s * u.sr) / u.sr
    segs = [(P.PAUSE, 0.0, sh)] if sh > 0 else []
    segs += [(ph, s + sh, e + sh) for ph, s, e in u.segs]
    end = len(a) / u.sr
    if segs[-1][2] < end:
        segs.append((P.PAUSE, segs[-1][2], end))
    return Utterance(u.family, u.voice, u.text, a, u.sr, P.clean_segments(segs))


def _colored_noise(n: int, rng: np.random.Generator, kind: str) -> np.ndarray:
    w = rng.standard_normal(n)
    if kind == "white":
        return w
    spec = np.fft.rfft(w)
    f = np.arange(len(spec)) + 1.0
    spec = spec / (np.sqrt(f) if kind == "pink" else f)
    x = np.fft.irfft(spec, n)
    return x / (x.std() + 1e-12)


def add_noise(x: np.ndarray, snr_db: float, rng: np.random.Generator, kind: str | None = None) -> np.ndarray:
    kind = kind or ["white", "pink", "brown"][rng.integers(3)]
    active = x[np.abs(x) > 0.02 * (np.abs(x).max() + 1e-9)]
    p_sig = float(np.mean(active**2)) if len(active) else float(np.mean(x**2))
    noise = _colored_noise(len(x), rng, kind)
    noise *= math.sqrt(p_sig / (10 ** (snr_db / 10)) / (np.mean(noise**2) + 1e-12))
    return (x + noise).astype(np.float32)


def add_reverb(x: np.ndarray, sr: int, rng: np.random.Generator) -> np.ndarray:
    rt60 = rng.uniform(0.15, 0.7)
    n = int(sr * rt60)
    t = np.arange(n) / sr
    rir = rng.standard_normal(n) * np.exp(-6.9 * t / rt60)
    rir[: int(0.002 * sr)] = 0.0
    rir[0] = 1.0 / rng.uniform(0.3, 1.0)  # direct path, direct-to-reverb ratio varies
    rir /= np.sqrt(np.sum(rir**2))
    m = len(x) + n
    nfft = 1 << (m - 1).bit_length()
    y = np.fft.irfft(np.fft.rfft(x, nfft) * np.fft.rfft(rir, nfft), nfft)[: len(x)]
    return y.astype(np.float32)


def decimate_16k_to_8k(x16: np.ndarray) -> np.ndarray:
    h = 32
    n = np.arange(-h, h + 1)
    k = 0.5 * 0.92 * np.sinc(0.5 * 0.92 * n) * np.kaiser(2 * h + 1, 7.0)
    y = np.convolve(x16, k, mode="same")
    return y[::2].astype(np.float32)


def ffmpeg_codec(x: np.ndarray, sr: int, rng: np.random.Generator) -> tuple[np.ndarray, int] | None:
    """Round trip through mp3 or opus at a random rate and bitrate; None if ffmpeg fails."""
    codec = ["libmp3lame", "libopus"][rng.integers(2)]
    if codec == "libopus":
        out_sr = int([8000, 16000, 24000, 48000][rng.integers(4)])
        br, ext = f"{int(rng.choice([12, 16, 24, 32]))}k", "ogg"
    else:
        out_sr = int([8000, 16000, 22050, 24000, 48000][rng.integers(5)])
        br, ext = f"{int(rng.choice([24, 32, 48, 64]))}k", "mp3"
    with tempfile.TemporaryDirectory() as d:
        src, enc, dec = Path(d) / "a.wav", Path(d) / f"b.{ext}", Path(d) / "c.wav"
        write_wav(src, x, sr)
        try:
            subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(src), "-ar", str(out_sr), "-ac", "1", "-c:a", codec, "-b:a", br, str(enc)], check=True, timeout=60)
            subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(enc), "-ar", str(out_sr), "-ac", "1", "-c:a", "pcm_s16le", str(dec)], check=True, timeout=60)
        except (OSError, subprocess.SubprocessError):
            return None
        y, ysr = V.read_wav(dec)
    # codecs add a small delay; align by cross-correlation on a 16 kHz view (bounded to 0..60 ms)
    return y, ysr


def write_wav(path, x: np.ndarray, sr: int) -> None:
    pcm = (np.clip(x, -1, 1) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sr)
        w.writeframes(pcm.tobytes())


def _codec_delay(ref16: np.ndarray, y16: np.ndarray) -> int:
    n = min(len(ref16), len(y16), 16000 * 4)
    a, b = ref16[:n], y16[:n]
    best, best_lag = -1e9, 0
    for lag in range(0, 1200, 8):  # up to 75 ms
        if lag >= n:
            break
        c = float(np.dot(a[: n - lag], b[lag:n]))
        if c > best:
            best, best_lag = c, lag
    return best_lag


def augment(u: Utterance, rng: np.random.Generator, strength: int, use_codec: bool = True, warp: float = 0.0) -> tuple[np.ndarray, int]:
    """Return (audio, rate) as the runtime would receive it. strength 0 = clean (gain only).

    ``warp`` (0 = off) is a speed / vocal-tract-length perturbation: the audio is read as
    if recorded at ``sr * warp``, scaling pitch and formants by ``warp`` and durations by
    ``1 / warp`` (the caller scales the phone times). It turns male voices into
    higher-pitched, shorter-tract ones and back.
    """
    src_sr = u.sr
    if warp:
        src_sr = int(round(u.sr * warp / 100.0) * 100)
    x16 = F.resample(u.audio, src_sr) if src_sr != F.SAMPLE_RATE else u.audio.copy()
    rate = F.SAMPLE_RATE
    if strength > 0:
        if rng.random() < 0.35:
            x16 = add_reverb(x16, rate, rng)
        if rng.random() < 0.8:
            x16 = add_noise(x16, float(rng.uniform(15, 40)), rng)
    peak = float(np.abs(x16).max()) + 1e-9
    x16 = x16 * (10 ** (float(rng.uniform(-30, 0)) / 20) / peak)
    if strength > 0:
        r = rng.random()
        if use_codec and r < 0.2:
            res = ffmpeg_codec(x16, rate, rng)
            if res is not None:
                y, ysr = res
                d = _codec_delay(x16, F.resample(y, ysr) if ysr != rate else y)
                d_in = int(round(d * ysr / rate))
                y = np.concatenate([y[d_in:], np.zeros(d_in, np.float32)])
                return y.astype(np.float32), ysr
        elif r < 0.45:
            return decimate_16k_to_8k(x16), 8000
    return x16.astype(np.float32), rate


def features_for(audio: np.ndarray, rate: int, extra_frames: int) -> np.ndarray:
    """Exactly the runtime's front end: resample to 16 kHz, log-mel, trailing silence frames."""
    x16 = F.resample(audio, rate) if rate != F.SAMPLE_RATE else audio
    return F.logmel(x16, extra_frames)


def n_frames_for(n_samples: int, rate: int) -> int:
    n16 = -(-n_samples * F.SAMPLE_RATE // rate)
    return -(-n16 // F.HOP)


def cache_dir() -> Path:
    return Path(os.environ.get("LIPSYNC_DATA", Path(__file__).resolve().parents[2] / "artifacts" / "lipsync"))
