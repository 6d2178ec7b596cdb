"""Lip-sync quality on a small HELD-OUT set generated at test time.

A dozen flite utterances (voices slt/awb/rms; flite was never used for training) on
evaluation prompts, fixed seed. Metrics as in ``training/metrics.py``, measured
without any time-shift search (except the lag metric itself).
"""

from __future__ import annotations

import shutil

import pytest

from livekit_avatar_plugin._audio.lipsync import LipSyncModel
from livekit_avatar_plugin.training import metrics as M
from livekit_avatar_plugin.training.evaluate import evaluate_utts
from livekit_avatar_plugin.training.gen_data import eval_set

pytestmark = pytest.mark.skipif(shutil.which("flite") is None, reason="flite (scripts/apt/lipsync.txt) is not installed")


@pytest.fixture(scope="module")
def heldout():
    utts = eval_set("flite", 12, seed=4242)
    assert len(utts) >= 10
    return utts


@pytest.fixture(scope="module")
def results(heldout):
    model = LipSyncModel.load()
    return {c: evaluate_utts(model, heldout, c) for c in ("clean", "snr20", "8khz")}


def test_jaw_tracking(results):
    assert results["clean"]["jaw_r"] >= 0.80


def test_bilabial_recall(results):
    assert results["clean"]["n_bilabial"] >= 15
    assert results["clean"]["bilabial_recall"] >= 0.90


def test_false_closures(results):
    assert results["clean"]["false_closure"] <= 0.05


def test_rounding_auc(results):
    assert results["clean"]["round_auc"] >= 0.85


def test_lag(results):
    assert abs(results["clean"]["lag_ms"]) <= 20


@pytest.mark.parametrize("cond", ("snr20", "8khz"))
def test_robustness(results, cond):
    deg = M.degradation(results["clean"], results[cond])
    assert all(v <= 0.10 for v in deg.values()), deg
