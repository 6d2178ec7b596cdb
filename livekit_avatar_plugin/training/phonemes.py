"""Phoneme labels -> mouth targets.

Every voice family's phone labels (espeak/piper IPA, flite/festival ARPAbet-like)
are mapped onto one ARPAbet-style set; each phone has an articulatory target for
the mouth channels and a coarticulation "dominance" (Cohen & Massaro style): the
jaw and lip-shape channels are a dominance-weighted blend of the neighbouring
phones' targets, so rounding spreads into the consonants around a rounded vowel
and the jaw glides between vowels; lips_closed and labiodental are envelopes that
are fully on during the closure with short anticipatory/release ramps.

Nothing here imports torch; tests and the evaluation use it directly.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

import numpy as np

CHANNELS = ("jaw_open", "lips_closed", "lip_round", "lip_spread", "labiodental")
JAW, CLOSED, ROUND, SPREAD, LABIO = range(5)

PAUSE = "pau"
STOPS = {"p", "b", "t", "d", "k", "g", "ch", "jh", "q"}
BILABIALS = {"p", "b", "m"}
OPEN_VOWELS = {"aa", "ae", "ah", "ao", "aw", "ay", "a"}
ROUNDED_VOWELS = {"uw", "uh", "ow", "oy", "ao", "o"}
SPREAD_VOWELS = {"iy", "ih", "ey", "eh", "ae"}
VOWELS = {
    "iy", "ih", "ey", "eh", "ae", "aa", "ao", "ah", "ax", "er", "uh", "uw", "ow",
    "aw", "ay", "oy", "a", "o", "ia", "ea", "ua",
}  # fmt: skip


@dataclass(frozen=True)
class Phone:
    start: tuple[float, float, float, float, float]  # target at segment start
    end: tuple[float, float, float, float, float] | None = None  # diphthongs glide to this
    dom: tuple[float, float, float] = (1.0, 1.0, 1.0)  # dominance of jaw, round, spread


def _t(jaw=0.15, closed=0.0, rnd=0.0, spread=0.0, labio=0.0):
    return (jaw, closed, rnd, spread, labio)


_V = (1.0, 1.0, 1.0)
PHONES: dict[str, Phone] = {
    # vowels
    "iy": Phone(_t(0.18, spread=0.9)),
    "ih": Phone(_t(0.30, spread=0.6)),
    "ey": Phone(_t(0.42, spread=0.6), _t(0.25, spread=0.8)),
    "eh": Phone(_t(0.50, spread=0.5)),
    "ae": Phone(_t(0.78, spread=0.5)),
    "a": Phone(_t(0.85, spread=0.3)),
    "aa": Phone(_t(0.92, spread=0.15)),
    "ao": Phone(_t(0.70, rnd=0.55)),
    "o": Phone(_t(0.45, rnd=0.75)),
    "ah": Phone(_t(0.62, spread=0.2)),
    "ax": Phone(_t(0.38, spread=0.1), dom=(0.5, 0.3, 0.3)),
    "er": Phone(_t(0.35, rnd=0.35)),
    "uh": Phone(_t(0.30, rnd=0.6)),
    "uw": Phone(_t(0.20, rnd=0.95)),
    "ow": Phone(_t(0.50, rnd=0.6), _t(0.25, rnd=0.9)),
    "aw": Phone(_t(0.88, spread=0.1), _t(0.30, rnd=0.85)),
    "ay": Phone(_t(0.90, spread=0.2), _t(0.28, spread=0.7)),
    "oy": Phone(_t(0.55, rnd=0.7), _t(0.28, spread=0.6)),
    "ia": Phone(_t(0.30, spread=0.6), _t(0.40, spread=0.1)),
    "ea": Phone(_t(0.50, spread=0.5), _t(0.40, spread=0.1)),
    "ua": Phone(_t(0.30, rnd=0.6), _t(0.40, spread=0.1)),
    # bilabials: lips together (envelope), jaw nearly closed
    "p": Phone(_t(0.05, closed=1.0), dom=(1.0, 0.2, 0.3)),
    "b": Phone(_t(0.05, closed=1.0), dom=(1.0, 0.2, 0.3)),
    "m": Phone(_t(0.05, closed=1.0), dom=(1.0, 0.2, 0.3)),
    # labiodentals
    "f": Phone(_t(0.10, labio=1.0), dom=(1.2, 0.3, 0.3)),
    "v": Phone(_t(0.10, labio=1.0), dom=(1.0, 0.3, 0.3)),
    # dentals / alveolars / velars: lip shape left to the neighbours
    "th": Phone(_t(0.18, spread=0.3), dom=(1.0, 0.2, 0.3)),
    "dh": Phone(_t(0.18, spread=0.3), dom=(1.0, 0.2, 0.3)),
    "t": Phone(_t(0.12), dom=(1.0, 0.15, 0.15)),
    "d": Phone(_t(0.12), dom=(0.9, 0.15, 0.15)),
    "n": Phone(_t(0.14), dom=(1.0, 0.15, 0.15)),
    "l": Phone(_t(0.20), dom=(0.8, 0.15, 0.15)),
    "s": Phone(_t(0.08, spread=0.4), dom=(1.2, 0.2, 0.3)),
    "z": Phone(_t(0.08, spread=0.4), dom=(1.2, 0.2, 0.3)),
    "k": Phone(_t(0.25), dom=(1.0, 0.15, 0.15)),
    "g": Phone(_t(0.25), dom=(1.0, 0.15, 0.15)),
    "ng": Phone(_t(0.22), dom=(1.0, 0.15, 0.15)),
    "q": Phone(_t(0.15), dom=(0.5, 0.1, 0.1)),  # glottal stop
    "sh": Phone(_t(0.12, rnd=0.6), dom=(1.0, 2.0, 1.0)),
    "zh": Phone(_t(0.12, rnd=0.6), dom=(1.0, 2.0, 1.0)),
    "ch": Phone(_t(0.10, rnd=0.55), dom=(1.0, 2.0, 1.0)),
    "jh": Phone(_t(0.10, rnd=0.55), dom=(1.0, 2.0, 1.0)),
    "r": Phone(_t(0.22, rnd=0.5), dom=(0.8, 1.5, 1.0)),
    "w": Phone(_t(0.15, rnd=0.95), dom=(1.0, 6.0, 3.0)),
    "y": Phone(_t(0.15, spread=0.6), dom=(1.0, 1.0, 2.0)),
    "hh": Phone(_t(0.40), dom=(0.05, 0.05, 0.05)),
    PAUSE: Phone(_t(0.0), dom=(1.5, 0.6, 0.6)),
}

# ---------------------------------------------------------------------------
# label normalisation

_ARPA_ALIASES = {
    "pau": PAUSE, "h#": PAUSE, "sil": PAUSE, "ssil": PAUSE, "#": PAUSE, "brth": PAUSE,
    "_": PAUSE, "": PAUSE, "ax": "ax", "axr": "er", "ix": "ih", "dx": "d", "nx": "n",
    "el": "l", "em": "m", "en": "n", "hv": "hh", "wh": "w",
}  # fmt: skip

# IPA (espeak-ng / piper) -> canonical; longest match first
_IPA = {
    "aɪə": "ay", "aʊə": "aw", "aɪ": "ay", "aʊ": "aw", "eɪ": "ey", "oʊ": "ow", "əʊ": "ow",
    "ɔɪ": "oy", "ɪə": "ia", "eə": "ea", "ɛə": "ea", "ʊə": "ua", "tʃ": "ch", "dʒ": "jh",
    "iə": "ia", "ɑɪ": "ay", "ɐɪ": "ay", "ʌʊ": "ow", "ɑʊ": "aw", "ɛɪ": "ey", "oː": "o",
    "i": "iy", "ɪ": "ih", "ᵻ": "ih", "e": "eh", "ɛ": "eh", "æ": "ae", "a": "a", "ɑ": "aa",
    "ɒ": "ao", "ɔ": "ao", "ʌ": "ah", "ɐ": "ah", "ə": "ax", "ɘ": "ax", "ɚ": "er", "ɜ": "er",
    "ʊ": "uh", "ɵ": "uh", "u": "uw", "ʉ": "uw", "o": "o", "y": "uw", "ø": "o",
    "p": "p", "b": "b", "m": "m", "t": "t", "d": "d", "n": "n", "k": "k", "ɡ": "g",
    "g": "g", "ŋ": "ng", "f": "f", "v": "v", "θ": "th", "ð": "dh", "s": "s", "z": "z",
    "ʃ": "sh", "ʒ": "zh", "h": "hh", "ɦ": "hh", "ɹ": "r", "r": "r", "ɾ": "d", "ɻ": "r",
    "l": "l", "ɫ": "l", "ɬ": "l", "w": "w", "ʍ": "w", "j": "y", "ʔ": "q", "x": "k",
    "ç": "hh", "ɲ": "n", "ʎ": "l", "c": "k", "ɟ": "g", "β": "v", "ʋ": "v",
    # other espeak-ng languages (es, it, pt-br, ru, cs, de)
    "ɭ": "l", "ɕ": "sh", "ʑ": "zh", "ʂ": "sh", "ʐ": "zh", "ɣ": "g", "ʝ": "y", "ʁ": "r", "ʀ": "r",
    "χ": "k", "ɸ": "f", "ɱ": "v", "ɨ": "ih", "ɯ": "uw", "ɤ": "ah", "œ": "o", "ʏ": "uw",
    "ũ": "uw", "õ": "o", "ã": "a", "ẽ": "eh", "ĩ": "iy",
}  # fmt: skip
_IPA_DROP = set("ˈˌːˑ‿|‖.-'̩̯̪̥̃̆̊ʰʲʷ͡ ")


def from_arpa(label: str) -> str:
    lab = label.strip().lower().rstrip("012")
    lab = _ARPA_ALIASES.get(lab, lab)
    if lab not in PHONES:
        return PAUSE if not lab.isalpha() else "ax"
    return lab


def from_ipa(label: str) -> list[str]:
    """One IPA phoneme string (e.g. espeak's 'aɪ', 'ˈɑː', 'tʃ') -> canonical phones."""
    s = "".join(ch for ch in unicodedata.normalize("NFC", label) if ch not in _IPA_DROP)
    s = "".join(ch for ch in s if not unicodedata.combining(ch))
    out: list[str] = []
    i = 0
    while i < len(s):
        for n in (3, 2, 1):
            if s[i : i + n] in _IPA:
                out.append(_IPA[s[i : i + n]])
                i += n
                break
        else:
            i += 1  # unknown symbol: skip
    return out


# ---------------------------------------------------------------------------
# segments and targets

Seg = tuple[str, float, float]  # (phone, start_s, end_s)


def clean_segments(segs: list[Seg]) -> list[Seg]:
    """Drop empty segments, merge consecutive pauses."""
    out: list[Seg] = []
    for ph, s, e in segs:
        if e - s <= 1e-4:
            continue
        if out and ph == PAUSE and out[-1][0] == PAUSE:
            out[-1] = (PAUSE, out[-1][1], e)
            continue
        out.append((ph, float(s), float(e)))
    return out


def frame_energy_db(audio: np.ndarray, sr: int, hop_s: float = 0.005) -> tuple[np.ndarray, float]:
    hop = max(1, int(round(sr * hop_s)))
    n = len(audio) // hop
    if n == 0:
        return np.full(1, -120.0), hop_s
    fr = audio[: n * hop].astype(np.float64).reshape(n, hop)
    return 10 * np.log10((fr**2).mean(axis=1) + 1e-12), hop / sr


def move_stop_closures(segs: list[Seg], audio: np.ndarray, sr: int) -> list[Seg]:
    """Give each stop the closure silence that precedes its release.

    espeak-ng (and some other engines) time a stop from its release burst, so the
    closure's near-silence sits at the end of the previous phone. Walk back from the
    stop's start over low-energy frames (at most 150 ms, 90 ms after a pause, and
    leaving the previous phone at least 30 ms) and move the boundary there.
    """
    if not segs:
        return segs
    en, hop_s = frame_energy_db(audio, sr)
    ref = np.percentile(en, 95)
    segs = list(segs)
    for i in range(1, len(segs)):
        ph, s, e = segs[i]
        if ph not in STOPS:
            continue
        pph, ps, pe = segs[i - 1]
        if pph == PAUSE:
            limit = max(ps, s - 0.09)
        else:
            limit = max(ps + 0.03, s - 0.15)
        thr = ref - (22.0 if ph in {"b", "d", "g", "jh"} else 28.0)
        t = s
        k = int(s / hop_s) - 1
        while k >= 0 and k * hop_s >= limit and en[min(k, len(en) - 1)] < thr:
            t = k * hop_s
            k -= 1
        if pph == PAUSE and t >= s - 1e-6:
            # a stop right after a pause: its closure is part of the silence anyway
            t = max(limit, s - 0.06)
        if t < s - 1e-6:
            segs[i - 1] = (pph, ps, t)
            segs[i] = (ph, t, e)
    return clean_segments(segs)


def _gauss_smooth(x: np.ndarray, sigma_frames: float) -> np.ndarray:
    if sigma_frames <= 0:
        return x
    r = int(np.ceil(3 * sigma_frames))
    k = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma_frames) ** 2)
    k /= k.sum()
    pad = np.pad(x, ((r, r), (0, 0)), mode="edge")
    out = np.empty_like(x)
    for c in range(x.shape[1]):
        out[:, c] = np.convolve(pad[:, c], k, mode="valid")
    return out


def targets(segs: list[Seg], n_frames: int, fps: float = 100.0) -> np.ndarray:
    """Mouth targets [n_frames, len(CHANNELS)] in [0, 1] for frames at t = i / fps."""
    t = np.arange(n_frames) / fps
    out = np.zeros((n_frames, len(CHANNELS)), dtype=np.float64)
    if not segs:
        return out.astype(np.float32)
    # --- dominance blend for jaw / round / spread
    num = np.zeros((n_frames, 3))
    den = np.full((n_frames, 3), 1e-6)
    taus = np.array([0.025, 0.07, 0.05])  # s: rounding anticipates furthest
    ch_idx = [JAW, ROUND, SPREAD]
    for ph, s, e in segs:
        P = PHONES[ph]
        dur = max(e - s, 1e-3)
        a = np.clip((t - s) / dur, 0.0, 1.0)
        tgt0 = np.array([P.start[c] for c in ch_idx])
        tgt1 = np.array([(P.end or P.start)[c] for c in ch_idx])
        tgt = tgt0[None, :] * (1 - a[:, None]) + tgt1[None, :] * a[:, None]
        dist = np.maximum(0.0, np.maximum(s - t, t - e))
        lo, hi = np.searchsorted(t, s - 0.4), np.searchsorted(t, e + 0.4)
        if hi <= lo:
            continue
        d = np.array(P.dom)[None, :] * np.exp(-dist[lo:hi, None] / taus[None, :])
        num[lo:hi] += d * tgt[lo:hi]
        den[lo:hi] += d
    blend = num / den
    for j, c in enumerate(ch_idx):
        out[:, c] = blend[:, j]
    # --- closure envelopes: on during the segment, anticipatory / release ramps
    for ph, s, e in segs:
        P = PHONES[ph]
        for c, pre, post in ((CLOSED, 0.025, 0.015), (LABIO, 0.03, 0.02)):
            if P.start[c] <= 0:
                continue
            env = np.ones(n_frames)
            env = np.where(t < s, np.clip(1 - (s - t) / pre, 0, 1), env)
            env = np.where(t > e, np.clip(1 - (t - e) / post, 0, 1), env)
            env = 0.5 - 0.5 * np.cos(np.pi * env)
            out[:, c] = np.maximum(out[:, c], P.start[c] * env)
    # lips together keep the jaw nearly shut
    out[:, JAW] *= 1.0 - 0.8 * out[:, CLOSED]
    out = _gauss_smooth(out, sigma_frames=0.008 * fps)
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def frame_phones(segs: list[Seg], n_frames: int, fps: float = 100.0) -> list[str]:
    """Phone label of every frame (pause outside the segments)."""
    labels = [PAUSE] * n_frames
    for ph, s, e in segs:
        a = max(0, int(np.ceil(s * fps - 1e-9)))
        b = min(n_frames, int(np.ceil(e * fps - 1e-9)))
        for i in range(a, b):
            labels[i] = ph
    return labels
