"""Plot the training curves of the ensemble members into one PNG.

    python -m livekit_avatar_plugin.training.plot_curves models/lipsync/history_run_*.json --out models/lipsync/training_curves.png
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("histories", nargs="+", type=Path)
    ap.add_argument("--labels", default="run a (specaug),run b (+mel warp),run c (+mel warp, mel noise)")
    ap.add_argument("--out", type=Path, default=Path("models/lipsync/training_curves.png"))
    args = ap.parse_args(argv)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = args.labels.split(",")
    fig, ax = plt.subplots(1, 3, figsize=(15, 4))
    for i, path in enumerate(args.histories):
        hist = json.loads(path.read_text())
        lab = labels[i] if i < len(labels) else path.stem
        ep = [h["epoch"] for h in hist]
        c = f"C{i}"
        ax[0].plot(ep, [h["train_loss"] for h in hist], color=c, ls="--", label=f"{lab} train")
        ax[0].plot(ep, [h["val_loss"] for h in hist], color=c, label=f"{lab} val")
        ax[1].plot(ep, [h["val"]["jaw_r"] for h in hist], color=c, label=f"{lab} jaw r")
        ax[1].plot(ep, [h["val"]["round_auc"] for h in hist], color=c, ls=":", label=f"{lab} round AUC")
        ax[2].plot(ep, [h["val"]["bilabial_recall"] for h in hist], color=c, label=f"{lab} bilabial recall")
        ax[2].plot(ep, [1 - h["val"]["false_closure"] for h in hist], color=c, ls=":", label=f"{lab} 1 - false closure")
    ax[0].set_ylabel("weighted BCE")
    ax[1].set_ylim(0.7, 0.95)
    ax[2].set_ylim(0.8, 1.005)
    for a, t in zip(ax, ("loss", "validation: jaw r, round AUC", "validation: closures")):
        a.set_xlabel("epoch")
        a.set_title(t)
        a.grid(alpha=0.3)
        a.legend(fontsize=7)
    fig.suptitle("lip-sync TCN, 3 ensemble members (validation = training families, unseen prompts)", fontsize=10)
    fig.tight_layout()
    fig.savefig(args.out, dpi=100)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
