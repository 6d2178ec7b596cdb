"""Evaluate the shipped lip-sync ONNX model per voice family and condition.

    python -m livekit_avatar_plugin.training.evaluate [--model models/lipsync/lipsync.onnx] [--n 40]

Families: held out (never trained on): flite (a synthesiser), espeak-de (a language),
sphinx (recorded speech, several speakers); and the training families espeak,
festival, piper, asterisk (recorded speech, one speaker), intl (other languages),
all on evaluation prompts that no training utterance used.
Conditions: clean (native rate), 20 dB SNR (white noise), 8 kHz input, 10 dB SNR
babble (recorded talkers), telephone band (300-3400 Hz, 8 kHz mu-law).
Runs through the real runtime (``LipSyncModel.infer``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from .._audio import features as F
from . import data as D
from . import metrics as M
from . import phonemes as P
from .gen_data import HELDOUT_FAMILIES, REAL_FAMILIES, TRAIN_FAMILIES, eval_set, load_eval

CONDITIONS = ("clean", "snr20", "8khz", "babble10", "phone")
_BABBLE: list[np.ndarray] = []


def babble_pool() -> list[np.ndarray]:
    """Recorded talkers for the babble condition (evaluation prompts, never trained on)."""
    if not _BABBLE:
        try:
            utts = eval_set("asterisk", 12)
        except FileNotFoundError:
            utts = eval_set("flite", 12, seed=99)
        _BABBLE.extend(F.resample(u.audio, u.sr) if u.sr != F.SAMPLE_RATE else u.audio for u in utts)
    return _BABBLE


def condition_audio(
    u: D.Utterance, cond: str, rng: np.random.Generator, pool: list[np.ndarray] | None = None
) -> tuple[np.ndarray, int]:
    """``u``'s audio under ``cond`` (one of ``CONDITIONS``); babble's talkers from ``pool``
    (16 kHz clips; default: ``babble_pool()``)."""
    if cond == "clean":
        return u.audio, u.sr
    if cond == "snr20":
        return D.add_noise(u.audio, 20.0, rng, kind="white"), u.sr
    x16 = F.resample(u.audio, u.sr) if u.sr != F.SAMPLE_RATE else u.audio
    if cond == "8khz":
        return D.decimate_16k_to_8k(x16), 8000
    if cond == "babble10":
        return D.babble(x16, babble_pool() if pool is None else pool, 10.0, rng), F.SAMPLE_RATE
    if cond == "phone":
        return D.telephone(x16), 8000
    raise ValueError(cond)


def evaluate_utts(model, utts: list[D.Utterance], cond: str = "clean") -> dict:
    preds, tgts, segs = [], [], []
    for i, u in enumerate(utts):
        audio, sr = condition_audio(u, cond, np.random.default_rng(i))
        pred = model.infer(audio, sr)
        n = D.n_frames_for(len(u.audio), u.sr)
        preds.append(pred)
        tgts.append(P.targets(u.segs, n))
        segs.append(u.segs)
    return M.compute(preds, tgts, segs)


def get_eval_set(family: str, n: int, data_dir: Path) -> list[D.Utterance]:
    """``eval_set(family, n)``, read from ``data_dir`` when gen_data wrote that very set.

    A set of another size is not cut down: ``n`` picks its prompts, so its first ``n``
    would be other utterances, and a figure would depend on what the cache holds.
    """
    f = data_dir / f"eval_{family}.npz"
    if f.exists():
        utts = load_eval(f)
        if len(utts) == n:
            return utts
    return eval_set(family, n)


def fmt_row(fam: str, cond: str, m: dict, real: bool = False) -> str:
    ok = M.passes(m, real)
    flag = lambda k: "" if ok[k] else "!"  # noqa: E731
    return (
        f"| {fam:16s} | {cond:6s} | {m['jaw_r']:.3f}{flag('jaw_r'):1s} | {m['bilabial_recall']:.3f}{flag('bilabial_recall'):1s} "
        f"| {m['false_closure']:.3f}{flag('false_closure'):1s} | {m['round_auc']:.3f}{flag('round_auc'):1s} "
        f"| {m['lag_ms']:+4.0f}{flag('lag_ms'):1s} | {m['n_bilabial']:4d} |"
    )


def main(argv: list[str] | None = None) -> int:
    from .._audio.lipsync import LipSyncModel

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None)
    ap.add_argument("--data", type=Path, default=D.cache_dir())
    ap.add_argument("--n", type=int, default=40, help="utterances per family")
    ap.add_argument("--families", default=",".join(HELDOUT_FAMILIES + TRAIN_FAMILIES))
    ap.add_argument("--conditions", default=",".join(CONDITIONS))
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = ap.parse_args(argv)
    model = LipSyncModel.load(args.model)
    results: dict[str, Any] = {}
    conds = args.conditions.split(",")
    t = M.TARGETS
    print(
        f"targets: jaw_r >= {t['jaw_r']:.2f} (recorded speech {M.REAL_JAW_R:.2f}), bilabial recall >= {t['bilabial_recall']:.2f}, "
        f"false closure <= {t['false_closure']:.2f}, round AUC >= {t['round_auc']:.2f}, |lag| <= {t['lag_ms']:.0f} ms;"
    )
    print("robustness: each metric degrades <= 10% relative under each condition.  '!' marks a miss.\n")
    print("| family           | cond   | jaw_r  | bilab  | false  | r_auc  | lag   | n_pbm |")
    print("|------------------|--------|--------|--------|--------|--------|-------|-------|")
    worst = {}
    for fam in args.families.split(","):
        try:
            utts = get_eval_set(fam, args.n, args.data)
        except ImportError as exc:
            print(f"| {fam} skipped: {exc}")
            continue
        if not utts:
            print(f"| {fam} skipped: no utterances")
            continue
        label = fam + (" (held out)" if fam in HELDOUT_FAMILIES else "")
        results[fam] = {}
        for cond in conds:
            m = evaluate_utts(model, utts, cond)
            results[fam][cond] = m
            print(fmt_row(label, cond, m, real=fam in REAL_FAMILIES), flush=True)
        deg = {c: M.degradation(results[fam]["clean"], results[fam][c]) for c in conds if c != "clean"}
        results[fam]["degradation"] = deg
        worst[fam] = max(max(d.values()) for d in deg.values())
    print("\nrelative degradation vs clean (positive = worse; target <= 0.10):")
    for fam, r in results.items():
        for c, d in r["degradation"].items():
            cells = "  ".join(f"{k} {v:+.3f}{'' if v <= 0.10 else '!'}" for k, v in d.items())
            print(f"  {fam:9s} {c:6s} {cells}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
