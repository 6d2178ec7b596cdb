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


# Debian's English fortune files; language packages (fortunes-it) add their own files beside them
_ENGLISH_FORTUNES = (
    "art", "ascii-art", "computers", "cookie", "debian", "definitions", "disclaimer", "drugs", "education",
    "ethnic", "food", "fortunes", "goedel", "humorists", "kids", "knghtbrd", "law", "linux", "linuxcookie",
    "literature", "love", "magic", "medicine", "men-women", "miscellaneous", "news", "paradoxum", "people",
    "perl", "pets", "platitudes", "politics", "pratchett", "riddles", "science", "songs-poems", "sports",
    "startrek", "tao", "translate-me", "wisdom", "work", "zippy",
)  # fmt: skip
_ITALIAN_FORTUNES = ("adams", "banner", "computer", "definizioni", "formiche", "italia", "itatrek", "jackfr", "leggi", "luke", "luttazzi", "norm", "paolotedeschi", "zuse")  # fmt: skip
# espeak-ng voice -> fortune files or folders (Debian fortunes-<lang>)
LANGUAGE_FORTUNES: dict[str, tuple[str, ...]] = {
    "es": ("es",),
    "it": ("it", *_ITALIAN_FORTUNES),
    "pt-br": ("brasil",),
    "ru": ("ru",),
    "cs": ("cs",),
    "de": ("de",),
}


def _fortune_texts(names: tuple[str, ...]) -> list[str]:
    texts = []
    for name in names:
        p = FORTUNE_DIR / name
        files = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix not in (".dat", ".u8")) if p.is_dir() else [p]
        for f in files:
            u8 = f.with_name(f.name + ".u8")  # the UTF-8 copy where the package ships one
            try:
                raw = (u8 if u8.exists() else f).read_bytes()
            except OSError:
                continue
            try:
                texts.append(raw.decode("utf-8"))
            except UnicodeDecodeError:
                texts.append(raw.decode("latin-1"))
    return texts


def load_prompts(lang: str = "en") -> list[str]:
    """Sentences from Debian's fortunes (deduplicated, 3-18 words), or a small English fallback."""
    names: tuple[str, ...]
    if lang == "en":
        names, pattern = _ENGLISH_FORTUNES, r"[A-Za-z][A-Za-z ,.'!?;:-]*"
    elif lang in LANGUAGE_FORTUNES:
        names, pattern = LANGUAGE_FORTUNES[lang], r"[^\W\d_](?:[^\W\d_]|[ ,.'!?;:-])*"
    else:
        raise ValueError(f"no prompts for language {lang!r}")
    out: set[str] = set()
    for text in _fortune_texts(names) if FORTUNE_DIR.is_dir() else []:
        for block in text.split("\n%\n"):
            block = " ".join(block.split())
            for sent in re.split(r"(?<=[.!?])\s+", block):
                sent = sent.strip()
                if 3 <= len(sent.split()) <= 18 and re.fullmatch(pattern, sent):
                    out.add(sent)
    if lang != "en":
        out -= set(load_prompts("en"))  # some foreign collections quote English
    if not out and lang != "en":
        raise FileNotFoundError(f"install fortunes-{lang.split('-')[0]} for {lang} prompts (scripts/apt/lipsync.txt)")
    return sorted(out) or list(_FALLBACK_PROMPTS)


def split_prompts(seed: int = 1234, lang: str = "en") -> tuple[list[str], list[str]]:
    """Disjoint (train, eval) prompt lists; eval gets 10% (at least 12)."""
    prompts = load_prompts(lang)
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
    if family.startswith("espeak-"):  # another language: the voice is the prompt's language
        var = V.ESPEAK_VARIANTS[rng.integers(len(V.ESPEAK_VARIANTS))]
        return {
            "voice": family.removeprefix("espeak-") + (f"+{var}" if var else ""),
            "rate": int(rng.integers(120, 250)),
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
                if family.startswith("espeak"):
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
        voice = p["voice"] if not family.startswith("espeak") else f"{p['voice']}@{p['rate']}/{p['pitch']}"
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
    return _mix_at(x, _colored_noise(len(x), rng, kind), snr_db)


def add_reverb(x: np.ndarray, sr: int, rng: np.random.Generator) -> np.ndarray:
    rt60 = rng.uniform(0.15, 1.0)  # up to a far-field hall
    n = int(sr * rt60)
    t = np.arange(n) / sr
    rir = rng.standard_normal(n) * np.exp(-6.9 * t / rt60)
    rir[: int(0.002 * sr)] = 0.0
    rir[0] = 1.0 / rng.uniform(0.3, 2.5)  # direct path; the far end of the range is a distant microphone
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
            subprocess.run(
                [
                    "ffmpeg",
                    "-v",
                    "error",
                    "-y",
                    "-i",
                    str(src),
                    "-ar",
                    str(out_sr),
                    "-ac",
                    "1",
                    "-c:a",
                    codec,
                    "-b:a",
                    br,
                    str(enc),
                ],
                check=True,
                timeout=60,
            )
            subprocess.run(
                ["ffmpeg", "-v", "error", "-y", "-i", str(enc), "-ar", str(out_sr), "-ac", "1", "-c:a", "pcm_s16le", str(dec)],
                check=True,
                timeout=60,
            )
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


def babble(x: np.ndarray, pool: list[np.ndarray], snr_db: float, rng: np.random.Generator) -> np.ndarray:
    """Add 3-6 other talkers (looped clips from ``pool``, same rate as ``x``) at ``snr_db``."""
    mix = np.zeros(len(x))
    for k in rng.choice(len(pool), size=min(len(pool), int(rng.integers(3, 7))), replace=False):
        c = pool[int(k)]
        c = np.tile(c, -(-len(x) // len(c)) + 1)
        start = int(rng.integers(len(c) - len(x) + 1))
        seg = c[start : start + len(x)]
        mix += seg / (np.sqrt(np.mean(seg**2)) + 1e-9)
    return _mix_at(x, mix, snr_db)


def music(n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    """Synthetic background music: chords of decaying harmonic notes and a noise beat."""
    out = np.zeros(n)
    t0, beat = 0, int(sr * rng.uniform(0.25, 0.6))
    while t0 < n:
        m = min(n - t0, beat * int(rng.integers(1, 5)))
        t = np.arange(m) / sr
        env = np.exp(-t * rng.uniform(1.0, 6.0))
        for midi in rng.choice(np.arange(45, 80), size=int(rng.integers(1, 4)), replace=False):
            f = 440.0 * 2 ** ((midi - 69) / 12)
            for h in range(1, 6):
                if f * h < sr / 2:
                    out[t0 : t0 + m] += env * np.sin(2 * np.pi * f * h * t + rng.uniform(0, 6.3)) / h**1.5
        t0 += m
    hits = np.arange(0, n, beat)
    for h in hits[rng.random(len(hits)) < 0.7]:
        k = min(n - h, int(0.05 * sr))
        out[h : h + k] += rng.standard_normal(k) * np.exp(-np.arange(k) / (0.01 * sr)) * rng.uniform(0.3, 1.5)
    return out


def _mix_at(x: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    active = x[np.abs(x) > 0.02 * (np.abs(x).max() + 1e-9)]
    p_sig = float(np.mean(active**2)) if len(active) else float(np.mean(x**2))
    noise = noise * math.sqrt(p_sig / (10 ** (snr_db / 10)) / (np.mean(noise**2) + 1e-12))
    return (x + noise).astype(np.float32)


def telephone(x16: np.ndarray) -> np.ndarray:
    """A narrowband phone line: 300-3400 Hz, 8 kHz, 8-bit mu-law."""
    n = len(x16)
    spec = np.fft.rfft(x16)
    f = np.fft.rfftfreq(n, 1 / F.SAMPLE_RATE)
    spec *= np.clip((f - 200) / 100, 0, 1) * np.clip((3600 - f) / 200, 0, 1)
    y = decimate_16k_to_8k(np.fft.irfft(spec, n).astype(np.float32))
    peak = float(np.abs(y).max()) + 1e-9
    mu = np.sign(y / peak) * np.log1p(255 * np.abs(y / peak)) / np.log1p(255)
    mu = np.round(mu * 127) / 127
    return (np.sign(mu) * np.expm1(np.abs(mu) * np.log1p(255)) / 255 * peak).astype(np.float32)


def whisper(x16: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Whispered speech: the short-time spectral envelope kept, the voicing replaced by noise."""
    win, hop = 512, 128
    n = len(x16)
    pad = np.concatenate([np.zeros(win), x16, np.zeros(win)])
    w = np.hanning(win)
    frames = np.lib.stride_tricks.sliding_window_view(pad, win)[::hop] * w
    mag = np.abs(np.fft.rfft(frames, axis=1))
    k = np.hanning(15)
    env = np.apply_along_axis(lambda m: np.convolve(m, k / k.sum(), mode="same"), 1, mag)  # no harmonics
    phase = np.exp(2j * np.pi * rng.random(env.shape))
    y_frames = np.fft.irfft(env * phase, win, axis=1) * w
    y = np.zeros(len(pad))
    norm = np.zeros(len(pad))
    for i, fr in enumerate(y_frames):
        y[i * hop : i * hop + win] += fr
        norm[i * hop : i * hop + win] += w**2
    y = (y / np.maximum(norm, 1e-3))[win : win + n]
    return (y * (np.sqrt(np.mean(x16**2)) / (np.sqrt(np.mean(y**2)) + 1e-9))).astype(np.float32)


def add_breaths(x16: np.ndarray, segs: list, rng: np.random.Generator) -> np.ndarray:
    """A breath (band-limited noise puff) in some pauses; the mouth target stays at rest."""
    y = x16.copy()
    peak = float(np.abs(x16).max()) + 1e-9
    for ph, s, e in segs:
        if ph != P.PAUSE or e - s < 0.3 or rng.random() < 0.5:
            continue
        dur = float(rng.uniform(0.15, min(0.45, e - s - 0.1)))
        a = int((s + rng.uniform(0.05, e - s - dur - 0.05)) * F.SAMPLE_RATE)
        m = min(int(dur * F.SAMPLE_RATE), len(y) - a)
        if m <= 0:
            continue
        spec = np.fft.rfft(rng.standard_normal(m))
        f = np.fft.rfftfreq(m, 1 / F.SAMPLE_RATE)
        spec *= np.exp(-0.5 * ((f - rng.uniform(800, 2500)) / 900) ** 2)
        puff = np.fft.irfft(spec, m) * np.hanning(m)
        y[a : a + m] += puff / (np.abs(puff).max() + 1e-9) * peak * 10 ** (rng.uniform(-30, -14) / 20)
    return y.astype(np.float32)


def augment(
    u: Utterance,
    rng: np.random.Generator,
    strength: int,
    use_codec: bool = True,
    warp: float = 0.0,
    pool: list[np.ndarray] | None = None,
) -> tuple[np.ndarray, int]:
    """Return (audio, rate) as the runtime would receive it. strength 0 = clean (gain only).

    ``warp`` (0 = off) is a speed / vocal-tract-length perturbation: the audio is read as
    if recorded at ``sr * warp``, scaling pitch and formants by ``warp`` and durations by
    ``1 / warp`` (the caller scales the phone times). It turns male voices into
    higher-pitched, shorter-tract ones and back. ``pool`` (16 kHz clips of other
    talkers) enables babble.
    """
    src_sr = u.sr
    if warp:
        src_sr = int(round(u.sr * warp / 100.0) * 100)
    x16 = F.resample(u.audio, src_sr) if src_sr != F.SAMPLE_RATE else u.audio.copy()
    rate = F.SAMPLE_RATE
    if strength > 0:
        if rng.random() < 0.05:
            x16 = whisper(x16, rng)
        if rng.random() < 0.3:
            x16 = add_breaths(x16, [(ph, s * u.sr / src_sr, e * u.sr / src_sr) for ph, s, e in u.segs], rng)
        if rng.random() < 0.4:
            x16 = add_reverb(x16, rate, rng)
        r = rng.random()
        if r < 0.5:
            x16 = add_noise(x16, float(rng.uniform(10, 40)), rng)
        elif r < 0.7 and pool:
            x16 = babble(x16, pool, float(rng.uniform(3, 20)), rng)
        elif r < 0.8:
            x16 = _mix_at(x16, music(len(x16), rate, rng), float(rng.uniform(5, 25)))
    peak = float(np.abs(x16).max()) + 1e-9
    x16 = x16 * (10 ** (float(rng.uniform(-30, 0)) / 20) / peak)
    if strength > 0 and rng.random() < 0.06:  # clipping: driven 6-20 dB into the rails
        g = 10 ** (rng.uniform(6, 20) / 20)
        x16 = np.clip(x16 / (np.abs(x16).max() + 1e-9) * g, -1, 1) * 0.9
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
        elif r < 0.35:
            return decimate_16k_to_8k(x16), 8000
        elif r < 0.5:
            return telephone(x16), 8000
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
