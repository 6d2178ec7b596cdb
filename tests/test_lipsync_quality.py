"""Lip-sync quality on small HELD-OUT sets made at test time.

A dozen flite utterances (voices slt/awb/rms; flite was never used for training) on
evaluation prompts, fixed seed; and the recorded speech of pocketsphinx-testdata
(several speakers, never trained on), timed by the forced aligner. Metrics as in
``training/metrics.py``, measured without any time-shift search (except the lag
metric itself).
"""

from __future__ import annotations

import importlib.util
import shutil

import pytest

from livekit_avatar_plugin._audio.lipsync import LipSyncModel
from livekit_avatar_plugin.training import metrics as M
from livekit_avatar_plugin.training import real_speech as R
from livekit_avatar_plugin.training.evaluate import evaluate_utts
from livekit_avatar_plugin.training.gen_data import eval_set

needs_flite = pytest.mark.skipif(shutil.which("flite") is None, reason="flite (scripts/apt/lipsync.txt) is not installed")
needs_recordings = pytest.mark.skipif(
    importlib.util.find_spec("pocketsphinx") is None or not R.SPHINX_DIR.is_dir(),
    reason="pocketsphinx (dev extra) and pocketsphinx-testdata (scripts/apt/lipsync.txt) are needed",
)


@pytest.fixture(scope="module")
def heldout():
    utts = eval_set("flite", 12, seed=4242)
    assert len(utts) >= 10
    return utts


@pytest.fixture(scope="module")
def results(heldout):
    model = LipSyncModel.load()
    return {c: evaluate_utts(model, heldout, c) for c in ("clean", "snr20", "8khz")}


@pytest.fixture(scope="module")
def recorded():
    model = LipSyncModel.load()
    utts = R.sphinx()
    return evaluate_utts(model, utts, "clean")


@needs_flite
def test_jaw_tracking(results):
    assert results["clean"]["jaw_r"] >= 0.80


@needs_flite
def test_bilabial_recall(results):
    assert results["clean"]["n_bilabial"] >= 15
    assert results["clean"]["bilabial_recall"] >= 0.90


@needs_flite
def test_false_closures(results):
    assert results["clean"]["false_closure"] <= 0.05


@needs_flite
def test_rounding_auc(results):
    assert results["clean"]["round_auc"] >= 0.85


@needs_flite
def test_lag(results):
    assert abs(results["clean"]["lag_ms"]) <= 20


@needs_flite
@pytest.mark.parametrize("cond", ("snr20", "8khz"))
def test_robustness(results, cond):
    deg = M.degradation(results["clean"], results[cond])
    assert all(v <= 0.10 for v in deg.values()), deg


@needs_recordings
def test_recorded_speech(recorded):
    # a guard at the shipped model's level (jaw r 0.83, recall 0.94, false closures 8.7 %);
    # issue 24's targets (0.80 / 0.94 / 4 %) and the second-round candidate: docs/lipsync.md
    assert recorded["n_bilabial"] >= 30
    assert recorded["jaw_r"] >= 0.78
    assert recorded["bilabial_recall"] >= 0.88
    assert recorded["false_closure"] <= 0.12
    assert abs(recorded["lag_ms"]) <= 20
