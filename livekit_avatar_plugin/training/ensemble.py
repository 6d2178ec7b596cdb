"""Export an ensemble of trained checkpoints (probabilities averaged) as one ONNX step model.

    python -m livekit_avatar_plugin.training.ensemble --member best_v2.pt:0.75 --member best_v3.pt:0.5 --calibrate

Each member is ``checkpoint[:lips_closed_logit_offset]`` (the offset printed by
``calibrate``). Prints the validation metrics (training families) of every member and
of the ensemble, then writes ``models/lipsync/lipsync.onnx``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from .._audio import features as F
from . import data as D
from . import metrics as M
from . import phonemes as P
from .gen_data import load_eval
from .model import Ensemble, LipSyncTCN
from .train import predict, val_inputs


def main(argv: list[str] | None = None) -> int:
    from .export import export
    from .train import MODEL_DIR

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--member", action="append", required=True)
    ap.add_argument("--data", type=Path, default=D.cache_dir())
    ap.add_argument("--width", type=int, default=96)
    ap.add_argument("--out", type=Path, default=MODEL_DIR / "lipsync.onnx")
    ap.add_argument("--calibrate", action="store_true", help="pick an ensemble-level lips_closed offset like calibrate.py")
    ap.add_argument("--offset", type=float, default=None, help="set the ensemble-level lips_closed offset instead")
    ap.add_argument("--recall", type=float, default=0.97)
    ap.add_argument("--max-false", type=float, default=0.02)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    members, offsets = [], []
    for spec in args.member:
        path, _, off = spec.partition(":")
        net = LipSyncTCN(n_mels=F.N_MELS, width=args.width, n_out=len(P.CHANNELS))
        p = Path(path)
        net.load_state_dict(torch.load(p if p.exists() else args.data / p))
        with torch.no_grad():
            net.out.bias[P.CLOSED] += float(off or 0.0)
        members.append(net.eval())
        offsets.append(float(off or 0.0))
    ens = Ensemble(members).eval()
    val = load_eval(args.data / "val.npz")
    if args.offset is not None:
        ens.offset[P.CLOSED] = args.offset
        offsets.append(args.offset)
    elif args.calibrate:
        from .calibrate import choose_offset

        chosen = choose_offset(ens, val, args.recall, args.max_false, b_max=2.0, label="ensemble ")
        ens.offset[P.CLOSED] = chosen
        offsets.append(chosen)
        print(f"ensemble lips_closed logit offset: {chosen:.2f}", flush=True)
    vx, vy, vsegs = val_inputs(val, ens.receptive_field)
    for name, net in [*((f"member {i}", m) for i, m in enumerate(members)), ("ensemble", ens)]:
        m = M.compute(predict(net, vx), vy, vsegs)
        print(f"{name:9s} val: jaw_r {m['jaw_r']:.3f}  bilabial {m['bilabial_recall']:.3f}  false_cl {m['false_closure']:.3f}  round_auc {m['round_auc']:.3f}  lag {m['lag_ms']:+.0f}ms", flush=True)
    p = export(ens, args.out, meta={"width": args.width, "members": args.member, "lips_closed_logit_offsets": offsets})
    print(f"wrote {p} ({p.stat().st_size / 1e6:.2f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
