"""Plot prediction vs phoneme-derived target for one evaluation utterance.

    python -m livekit_avatar_plugin.training.plot_example --family flite --index 0 --out docs/img/lipsync_example.png
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from . import data as D
from . import phonemes as P
from .evaluate import get_eval_set


def save_figure(fig, out: Path, dpi: int) -> None:
    """Lay out, write and report a figure (the training plots share this)."""
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=dpi)
    print(f"wrote {out}")


def main(argv: list[str] | None = None) -> int:
    from .._audio.lipsync import LipSyncModel

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--family", default="flite")
    ap.add_argument("--index", type=int, default=0)
    ap.add_argument("--model", default=None)
    ap.add_argument("--data", type=Path, default=D.cache_dir())
    ap.add_argument("--out", type=Path, default=Path("docs/img/lipsync_example.png"))
    args = ap.parse_args(argv)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # the index counts in the evaluation set (evaluate's 40), whether or not gen_data cached it
    u = get_eval_set(args.family, max(40, args.index + 1), args.data)[args.index]
    model = LipSyncModel.load(args.model)
    pred = model.infer(u.audio, u.sr)
    tgt = P.targets(u.segs, len(pred))
    t = np.arange(len(pred)) / model.fps
    fig, ax = plt.subplots(4, 1, figsize=(13, 7.5), sharex=True, gridspec_kw={"height_ratios": [1, 1, 1, 1]})
    ax[0].plot(np.arange(len(u.audio)) / u.sr, u.audio, lw=0.3, color="0.35")
    for ph, s, e in u.segs:
        if ph != P.PAUSE:
            ax[0].axvline(s, color="0.8", lw=0.5)
            ax[0].text((s + e) / 2, 0.9 * np.abs(u.audio).max(), ph, ha="center", fontsize=7, color="C3" if ph in P.BILABIALS else "k")
    ax[0].set_title(f"{u.family} ({u.voice}, held out)" if args.family == "flite" else f"{u.family} ({u.voice})")
    ax[0].set_ylabel("audio")
    for k, name in enumerate(("jaw_open", "lips_closed", "lip_round")):
        c = P.CHANNELS.index(name)
        ax[k + 1].plot(t, tgt[:, c], color="0.5", lw=1.5, label="target (phonemes)")
        ax[k + 1].plot(t, pred[:, model.channels.index(name)], color=f"C{k}", lw=1.2, label="model (streaming runtime)")
        ax[k + 1].set_ylim(-0.03, 1.03)
        ax[k + 1].set_ylabel(name)
        ax[k + 1].legend(loc="upper right", fontsize=7)
    ax[-1].set_xlabel("time (s)")
    fig.text(0.01, 0.005, f'"{u.text}"', fontsize=8)
    save_figure(fig, args.out, dpi=100)
    return 0


if __name__ == "__main__":
    sys.exit(main())
