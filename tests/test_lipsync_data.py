"""The lip-sync training data: prompts per language, the augmentations for real
conditions, and recorded speech timed by the forced aligner."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from livekit_avatar_plugin._audio import features as F
from livekit_avatar_plugin.training import data as D
from livekit_avatar_plugin.training import phonemes as P
from livekit_avatar_plugin.training import real_speech as R

needs_aligner = pytest.mark.skipif(
    importlib.util.find_spec("pocketsphinx") is None or not R.SPHINX_DIR.is_dir(),
    reason="pocketsphinx (dev extra) and pocketsphinx-testdata (scripts/apt/lipsync.txt) are needed",
)


def _band_energy(x: np.ndarray, sr: int, lo: float, hi: float) -> float:
    spec = np.abs(np.fft.rfft(x)) ** 2
    f = np.fft.rfftfreq(len(x), 1 / sr)
    return float(spec[(f >= lo) & (f < hi)].sum() / spec.sum())


def _vowel(sr: int = 16000, seconds: float = 1.0, f0: float = 120.0) -> np.ndarray:
    """A voiced test signal: harmonics of f0 under two formant-like peaks."""
    t = np.arange(int(sr * seconds)) / sr
    x = sum(
        np.sin(2 * np.pi * f0 * h * t)
        * (np.exp(-(((f0 * h - 700) / 300) ** 2)) + 0.5 * np.exp(-(((f0 * h - 1200) / 300) ** 2)) + 0.02)
        for h in range(1, 60)
    )
    return (0.3 * x / np.abs(x).max()).astype(np.float32)


def test_telephone_band_is_narrow_and_8khz():
    rng = np.random.default_rng(0)
    x = rng.standard_normal(16000).astype(np.float32) * 0.1
    y = D.telephone(x)
    assert len(y) == 8000
    assert _band_energy(y, 8000, 0, 150) < 0.01
    assert _band_energy(y, 8000, 3700, 4000) < 0.01
    assert _band_energy(y, 8000, 500, 3000) > 0.8


def test_whisper_keeps_envelope_and_removes_voicing():
    x = _vowel()
    y = D.whisper(x, np.random.default_rng(1))
    assert y.shape == x.shape
    assert np.isclose(np.sqrt(np.mean(y**2)), np.sqrt(np.mean(x**2)), rtol=0.05)
    # the spectral envelope stays (energy around the first formant) ...
    assert _band_energy(y, 16000, 400, 1000) > 0.4

    # ... but the harmonics go: no strong periodicity at the pitch period
    def periodicity(s: np.ndarray) -> float:
        s = s - s.mean()
        lag = int(16000 / 120)
        return float(np.dot(s[:-lag], s[lag:]) / np.dot(s, s))

    assert periodicity(x) > 0.9
    assert periodicity(y) < 0.3


def test_babble_and_music_at_the_asked_snr():
    rng = np.random.default_rng(2)
    x = _vowel()
    pool = [rng.standard_normal(9000).astype(np.float32) * s for s in (0.1, 1.0, 3.0, 0.5)]
    active = x[np.abs(x) > 0.02 * np.abs(x).max()]  # SNR is over the speech, not its silences
    for noisy in (D.babble(x, pool, 10.0, rng), D._mix_at(x, D.music(len(x), 16000, rng), 10.0)):
        noise = noisy - x
        snr = 10 * np.log10(np.mean(active**2) / np.mean(noise**2))
        assert abs(snr - 10.0) < 0.5


def test_breaths_only_in_pauses():
    x = np.zeros(32000, np.float32)
    x[8000:24000] = _vowel(seconds=1.0)
    segs = [(P.PAUSE, 0.0, 0.5), ("aa", 0.5, 1.5), (P.PAUSE, 1.5, 2.0)]
    hits = 0
    for seed in range(10):
        y = D.add_breaths(x, segs, np.random.default_rng(seed))
        np.testing.assert_array_equal(y[8000:24000], x[8000:24000])
        hits += bool(np.abs(y).max() > 0)
    assert hits >= 3


def test_prompts_per_language_are_disjoint_and_english_stays_english():
    tr, ev = D.split_prompts()
    assert not set(tr) & set(ev)
    assert all(s.isascii() for s in tr[:2000])
    if not (D.FORTUNE_DIR / "de").is_dir():
        pytest.skip("fortunes-de is not installed")
    de = D.load_prompts("de")
    assert len(de) > 1000
    assert not set(de) & set(tr)
    with pytest.raises(ValueError, match="no prompts for language 'xx'"):
        D.load_prompts("xx")


def test_other_languages_map_to_known_phones():
    for ipa in ("ɕ", "ʑ", "ɭ", "ɣ", "ʝ", "œ", "ũ", "ʁ"):
        phones = P.from_ipa(ipa)
        assert phones and all(ph in P.PHONES for ph in phones), ipa


@needs_aligner
def test_aligner_times_recorded_speech():
    path = R.SPHINX_DIR / "goforward.raw"
    audio = np.frombuffer(path.read_bytes(), "<i2").astype(np.float32) / 32768.0
    segs = R.aligner().align(audio, "go forward ten meters")
    assert segs is not None
    phones = [ph for ph, _, _ in segs if ph != P.PAUSE]
    assert phones[:3] == ["g", "ow", "f"]
    assert phones[-1] in ("z", "s")
    # contiguous, ordered and covering the clip
    assert segs[0][1] == 0.0 and abs(segs[-1][2] - len(audio) / R.RATE) < 1e-6
    assert all(a[2] == pytest.approx(b[1]) for a, b in zip(segs, segs[1:]))
    # the speech sits where the energy is
    speech = [(s, e) for ph, s, e in segs if ph != P.PAUSE]
    en, hop = P.frame_energy_db(audio, R.RATE)
    inside = np.zeros(len(en), bool)
    for s, e in speech:
        inside[int(s / hop) : int(e / hop)] = True
    assert en[inside].mean() > en[~inside].mean() + 15


@needs_aligner
def test_aligner_refuses_unknown_words_and_wrong_text():
    al = R.aligner()
    assert al.words("go forward zzqxv") is None
    assert al.words("Press 1 to continue.") == ["press", "one", "to", "continue"]


@needs_aligner
def test_sphinx_clips_are_evaluation_only():
    utts = R.sphinx()
    assert len(utts) >= 10
    assert sum(u.duration for u in utts) > 30
    assert {u.family for u in utts} == {"sphinx"}
    for u in utts:
        assert u.sr == F.SAMPLE_RATE
        assert sum(ph in P.VOWELS for ph, _, _ in u.segs) >= 1
    # the asterisk split never hands an evaluation prompt to training
    if R.ASTERISK_TEXT.exists():
        names = R.asterisk_prompts()
        ev = {n for n in names if R.is_eval_prompt(n)}
        assert 0.05 < len(ev) / len(names) < 0.15
        assert all(Path(n).name for n in ev)


def test_a_cached_evaluation_set_of_another_size_is_not_cut_down(tmp_path, monkeypatch):
    """A figure must not depend on what gen_data left in the cache: ``n`` picks the prompts."""
    from livekit_avatar_plugin.training import evaluate as E
    from livekit_avatar_plugin.training.gen_data import save_eval

    cached = [D.Utterance("flite", "slt", f"cached {i}", np.zeros(1600, np.float32), 16000, []) for i in range(3)]
    save_eval(tmp_path / "eval_flite.npz", cached)
    made: list[int] = []

    def fake_eval_set(family: str, n: int) -> list[D.Utterance]:
        made.append(n)
        return [D.Utterance(family, "slt", f"made {i}", np.zeros(1600, np.float32), 16000, []) for i in range(n)]

    monkeypatch.setattr(E, "eval_set", fake_eval_set)
    assert [u.text for u in E.get_eval_set("flite", 3, tmp_path)] == ["cached 0", "cached 1", "cached 2"]
    assert made == []
    assert [u.text for u in E.get_eval_set("flite", 2, tmp_path)] == ["made 0", "made 1"]
    assert made == [2]
