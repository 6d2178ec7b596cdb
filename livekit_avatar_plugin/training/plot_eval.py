"""Compare two evaluations (``evaluate --json``) per family and condition, as a picture.

python -m livekit_avatar_plugin.training.plot_eval old.json new.json --labels v1,v2 --out docs/img/lipsync_v2_eval.png
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from . import metrics as M
from .plot_example import save_figure

PANELS = (
    ("jaw_r", "jaw r (higher is better)", M.TARGETS["jaw_r"]),
    ("bilabial_recall", "bilabial recall", M.TARGETS["bilabial_recall"]),
    ("false_closure", "false closures (lower is better)", M.TARGETS["false_closure"]),
    ("round_auc", "rounding AUC", M.TARGETS["round_auc"]),
)


def main(argv: list[str] | None = None) -> int:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("results", nargs="+", type=Path)
    ap.add_argument("--labels", default=None, help="comma-separated, one per results file")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    runs = [json.loads(p.read_text()) for p in args.results]
    labels = args.labels.split(",") if args.labels else [p.stem for p in args.results]
    if len(labels) != len(runs):
        ap.error(f"{len(runs)} results files but {len(labels)} labels")
    families = [f for f in runs[0] if all(f in r for r in runs)]
    conds = [c for c in runs[0][families[0]] if c != "degradation"]
    fig, axes = plt.subplots(len(PANELS), 1, figsize=(max(8, 0.55 * len(families) * len(conds)), 3.0 * len(PANELS)), sharex=True)
    x = np.arange(len(families) * len(conds))
    width = 0.8 / len(runs)
    for ax, (key, title, target) in zip(axes, PANELS):
        for k, (run, label) in enumerate(zip(runs, labels)):
            vals = [run[f][c][key] if c in run[f] else np.nan for f in families for c in conds]
            ax.bar(x + (k - (len(runs) - 1) / 2) * width, vals, width, label=label)
        ax.axhline(target, color="k", lw=1, ls="--")
        ax.set_title(f"{title}; dashed: target {target}", fontsize=10)
        for b in range(1, len(families)):
            ax.axvline(b * len(conds) - 0.5, color="0.7", lw=0.8)
        if key != "false_closure":
            ax.set_ylim(0.4, 1.0)
    axes[0].legend(loc="lower right", ncol=len(runs))
    axes[-1].set_xticks(x)
    axes[-1].set_xticklabels(
        [f"{f}\n{c}" if i == 0 else c for f in families for i, c in enumerate(conds)], rotation=60, fontsize=8
    )
    save_figure(fig, args.out, dpi=90)
    return 0


if __name__ == "__main__":
    sys.exit(main())
