"""Recorded human speech with phone timings from a forced aligner.

Two sources, both Debian packages, aligned with pocketsphinx (PyPI, BSD, its US
English acoustic model and dictionary ship in the wheel):

- ``asterisk``: Asterisk's core prompts (``asterisk-core-sounds-en-g722``,
  16 kHz G.722; CC-BY-SA-3.0, recorded by Allison Smith) with their transcripts
  (``asterisk-core-sounds-en``: ``core-sounds-en.txt``). Training speech; a fixed
  tenth of the prompts is kept for evaluation.
- ``sphinx``: ``pocketsphinx-testdata`` (LibriVox, card names, digits, several
  speakers). **Evaluation only**: never trained on.

Alignment runs twice (words, then phones inside the words), as pocketsphinx does;
an utterance with a word outside the dictionary, or that the aligner cannot fit,
is skipped rather than guessed.
"""

from __future__ import annotations

import gzip
import re
import subprocess
import threading
import wave
import zlib
from pathlib import Path

import numpy as np

from . import phonemes as P

ASTERISK_DIR = Path("/usr/share/asterisk/sounds/en")
ASTERISK_TEXT = Path("/usr/share/doc/asterisk-core-sounds-en/core-sounds-en.txt.gz")
SPHINX_DIR = Path("/usr/share/pocketsphinx/test/data")
RATE = 16000
_FPS = 100  # pocketsphinx's frame rate
EVAL_SHARE = 10  # one prompt in ten (by a hash of its name) is evaluation-only

_NUMBERS = {"0": "zero", "1": "one", "2": "two", "3": "three", "4": "four", "5": "five", "6": "six", "7": "seven", "8": "eight", "9": "nine"}  # fmt: skip
# the sphinx test clips with a known transcript beyond the two .transcription files
_SPHINX_EXTRA = {
    "goforward.raw": "go forward ten meters",
    "tidigits/dhd.2934z.raw": "two nine three four zero",
}


class _Aligner:
    """One pocketsphinx decoder per process; alignment is not thread-safe."""

    def __init__(self) -> None:
        from pocketsphinx import Decoder

        self._dec = Decoder(samprate=RATE, lm=None, loglevel="FATAL")
        self._lock = threading.Lock()

    def words(self, text: str) -> list[str] | None:
        """The transcript as dictionary words, or None if one is unknown."""
        out = []
        for w in re.findall(r"[a-z0-9']+", text.lower()):
            w = _NUMBERS.get(w, w)
            if not self._dec.lookup_word(w):
                return None
            out.append(w)
        return out or None

    def align(self, audio: np.ndarray, text: str) -> list[P.Seg] | None:
        words = self.words(text)
        if words is None:
            return None
        pcm = (np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes()
        with self._lock:
            try:
                self._dec.set_align_text(" ".join(words))
                self._decode(pcm)
                self._dec.set_alignment()
                self._decode(pcm)
                alignment = self._dec.get_alignment()
            except RuntimeError:
                return None
            if alignment is None:
                return None
            phones = [(p.name, p.start, p.start + p.duration) for w in alignment for p in w]
        return _segments(phones, len(audio) / RATE)

    def _decode(self, pcm: bytes) -> None:
        self._dec.start_utt()
        self._dec.process_raw(pcm, full_utt=True)
        self._dec.end_utt()


def _segments(phones: list[tuple[str, int, int]], duration: float) -> list[P.Seg] | None:
    """pocketsphinx phones (frames) -> canonical segments; gaps become pauses."""
    segs: list[P.Seg] = []
    t = 0.0
    for name, s, e in phones:
        start, end = s / _FPS, min(e / _FPS, duration)
        if start > t:
            segs.append((P.PAUSE, t, start))
        label = P.PAUSE if name.upper() == "SIL" or name.startswith("+") else P.from_arpa(name)
        segs.append((label, start, end))
        t = end
    if t < duration:
        segs.append((P.PAUSE, t, duration))
    segs = P.clean_segments(segs)
    return segs if any(ph != P.PAUSE for ph, _, _ in segs) else None


_ALIGNER: _Aligner | None = None


def aligner() -> _Aligner:
    global _ALIGNER
    if _ALIGNER is None:
        _ALIGNER = _Aligner()
    return _ALIGNER


def _decode_g722(path: Path) -> np.ndarray:
    raw = subprocess.run(
        ["ffmpeg", "-v", "error", "-f", "g722", "-i", str(path), "-f", "s16le", "-ac", "1", "-ar", str(RATE), "-"],
        check=True,
        capture_output=True,
        timeout=60,
    ).stdout
    return np.frombuffer(raw, "<i2").astype(np.float32) / 32768.0


def _read_pcm(path: Path) -> np.ndarray:
    if path.suffix == ".wav":
        with wave.open(str(path), "rb") as w:
            if w.getframerate() != RATE or w.getsampwidth() != 2 or w.getnchannels() != 1:
                raise ValueError(f"{path}: expected 16 kHz 16-bit mono")
            raw = w.readframes(w.getnframes())
    else:
        raw = path.read_bytes()
    return np.frombuffer(raw, "<i2").astype(np.float32) / 32768.0


def asterisk_prompts() -> dict[str, str]:
    """Prompt name -> transcript, for the prompts whose audio is installed."""
    if not ASTERISK_TEXT.exists() or not ASTERISK_DIR.is_dir():
        raise FileNotFoundError("install asterisk-core-sounds-en and asterisk-core-sounds-en-g722 (scripts/apt/lipsync.txt)")
    out = {}
    for line in gzip.open(ASTERISK_TEXT, "rt", encoding="utf-8", errors="replace"):
        name, sep, text = line.partition(":")
        if not sep or name.startswith(";"):
            continue
        text = re.sub(r"\[.*?\]|<.*?>|\(.*?\)", " ", text).strip()
        if text and (ASTERISK_DIR / f"{name.strip()}.g722").exists():
            out[name.strip()] = text
    return out


def is_eval_prompt(name: str) -> bool:
    return zlib.crc32(name.encode()) % EVAL_SHARE == 0


def _utterance(family: str, voice: str, text: str, audio: np.ndarray):
    """A recorded clip as a training ``Utterance`` timed by the aligner; None if too
    short or the aligner cannot fit it."""
    from .data import Utterance

    segs = aligner().align(audio, text) if len(audio) >= RATE * 0.3 else None
    return None if segs is None else Utterance(family, voice, text, audio, RATE, P.move_stop_closures(segs, audio, RATE))


def asterisk(split: str, limit: int | None = None):
    """Aligned Asterisk prompts: ``split`` is "train" or "eval" (disjoint prompts)."""
    out = []
    for name, text in sorted(asterisk_prompts().items()):
        if is_eval_prompt(name) != (split == "eval"):
            continue
        u = _utterance("asterisk", "allison", text, _decode_g722(ASTERISK_DIR / f"{name}.g722"))
        if u is not None:
            out.append(u)
        if limit is not None and len(out) >= limit:
            break
    return out


def sphinx_transcripts() -> dict[Path, str]:
    """pocketsphinx-testdata clips with their transcripts."""
    if not SPHINX_DIR.is_dir():
        raise FileNotFoundError("install pocketsphinx-testdata (scripts/apt/lipsync.txt)")
    out: dict[Path, str] = {}
    for sub in ("librivox", "cards"):
        tr = sorted((SPHINX_DIR / sub).glob("*transcription"))
        for line in tr[0].read_text().splitlines() if tr else []:
            m = re.fullmatch(r"\s*(.*?)\s*\((\S+)\)\s*", line)
            if m:
                out[SPHINX_DIR / sub / f"{m.group(2)}.wav"] = re.sub(r"</?s>", " ", m.group(1)).strip()
    for rel, text in _SPHINX_EXTRA.items():
        out[SPHINX_DIR / rel] = text
    return {p: t for p, t in out.items() if p.exists()}


def sphinx():
    """Aligned pocketsphinx-testdata utterances (evaluation only)."""
    utts = (_utterance("sphinx", path.stem, text, _read_pcm(path)) for path, text in sorted(sphinx_transcripts().items()))
    return [u for u in utts if u is not None]
