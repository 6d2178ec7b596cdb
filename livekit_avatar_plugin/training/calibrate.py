"""Calibrate the lips_closed output on *training-family* validation data and export.

    python -m livekit_avatar_plugin.training.calibrate [--data artifacts/lipsync] [--ckpt .../best.pt]

On clean validation speech the closure channel is confident, but under noise or an
unfamiliar voice it tends to stay just under 0.5. This adds a logit offset ``b`` to
the lips_closed output (folded into the last layer's bias, so the ONNX graph is
unchanged): the smallest ``b`` in 0..3 for which bilabial recall on the *noisy*
validation set (20 dB SNR, 8 kHz, vocal-tract warp, telephone band) reaches
``--recall``, as long as false closures stay <= ``--max-false`` on clean validation and
on its recorded speech alone, and <= twice that under noise (babble is reported only). Only the training families' validation
utterances are used; the held-out families are not touched.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .._audio import features as F
from . import data as D
from . import metrics as M
from . import phonemes as P
from .evaluate import condition_audio
from .gen_data import LOOKAHEAD_FRAMES, REAL_FAMILIES, load_eval
from .model import LipSyncTCN


CONDITIONS = ("clean", "snr20", "8khz", "warp", "phone", "babble10")
NOISY = CONDITIONS[1:]


def _logits(net, utts, cond: str, rf: int) -> tuple[Any, Any, Any]:
    sil = F.silence_frame()
    out, tg, sg = [], [], []
    rng = np.random.default_rng(5)
    pool = [F.resample(u.audio, u.sr) for u in utts[::7][:12]] if cond == "babble10" else None
    for u in utts:
        audio, sr, segs = u.audio, u.sr, u.segs
        if cond == "warp":
            w = float(rng.choice([0.85, 1.2]))
            fake = int(round(sr * w / 100) * 100)
            k = sr / fake
            sr, segs = fake, [(ph, s * k, e * k) for ph, s, e in segs]
        else:
            audio, sr = condition_audio(u, cond, rng, pool)
        n = D.n_frames_for(len(audio), sr)
        f = D.features_for(audio, sr, LOOKAHEAD_FRAMES)
        x = np.concatenate([np.repeat(sil[None], rf - 1, 0), f])
        with torch.no_grad():
            lg = net(torch.from_numpy(x.T.copy()).float()[None])[0].T.numpy()[LOOKAHEAD_FRAMES:]
        out.append(lg)
        tg.append(P.targets(segs, n))
        sg.append(segs)
    return out, tg, sg


def real_subset(utts, logits):
    """The clean logits of the recorded-speech validation utterances (closures must not fire there)."""
    keep = [i for i, u in enumerate(utts) if u.family in REAL_FAMILIES]
    return tuple([part[i] for i in keep] for part in logits)


def _metrics(logits, tg, sg, b):
    preds = []
    for lg in logits:
        lg = lg.copy()
        lg[:, P.CLOSED] += b
        preds.append(1 / (1 + np.exp(-lg)))
    return M.compute(preds, tg, sg)


def choose_offset(net, val, recall: float, max_false: float, b_max: float, label: str = "") -> float:
    """The smallest lips_closed logit offset that reaches ``recall`` under the noisy
    conditions while false closures stay <= ``max_false`` on clean and recorded speech and
    <= 2 x ``max_false`` under noise. Babble is shown, not bounded: there another talker's
    closures are heard, and bounding it kept closures off real speech's own /p b m/."""
    conds = {c: _logits(net, val, c, net.receptive_field) for c in CONDITIONS}
    real = real_subset(val, conds["clean"])
    if real[0]:
        conds["real"] = real
    chosen = 0.0
    for b in np.arange(0.0, b_max + 0.01, 0.25):
        ms = {c: _metrics(*v, b) for c, v in conds.items()}
        noisy_recall = min(ms[c]["bilabial_recall"] for c in NOISY if c != "babble10")
        too_many = any(m["false_closure"] > max_false * (2 if c in NOISY else 1) for c, m in ms.items() if c != "babble10")
        print(
            f"{label}b={b:.2f}  recall "
            + " ".join(f"{c} {m['bilabial_recall']:.3f}" for c, m in ms.items())
            + "  false closures "
            + " ".join(f"{c} {m['false_closure']:.3f}" for c, m in ms.items()),
            flush=True,
        )
        if too_many:
            break
        chosen = float(b)
        if noisy_recall >= recall:
            break
    return chosen


def main(argv: list[str] | None = None) -> int:
    from .export import export
    from .train import MODEL_DIR

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=D.cache_dir())
    ap.add_argument("--ckpt", type=Path, default=None)
    ap.add_argument("--width", type=int, default=96)
    ap.add_argument("--recall", type=float, default=0.97)
    ap.add_argument("--max-false", type=float, default=0.02)
    ap.add_argument("--out", type=Path, default=MODEL_DIR / "lipsync.onnx")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    net = LipSyncTCN(n_mels=F.N_MELS, width=args.width, n_out=len(P.CHANNELS))
    net.load_state_dict(torch.load(args.ckpt or args.data / "best.pt"))
    net.eval()
    val = load_eval(args.data / "val.npz")
    chosen = choose_offset(net, val, args.recall, args.max_false, b_max=3.0)
    print(f"lips_closed logit offset: {chosen:.2f}", flush=True)
    with torch.no_grad():
        net.out.bias[P.CLOSED] += chosen
    p = export(net, args.out, meta={"width": args.width, "lips_closed_logit_offset": chosen})
    print(f"wrote {p} ({p.stat().st_size / 1e6:.2f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
