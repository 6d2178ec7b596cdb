"""``livekit-avatar measure``: measure the mouth an avatar shows against held-out speech."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

from .render import parse_size

log = logging.getLogger(__name__)


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "measure", help="measure how an avatar's rendered mouth follows held-out speech",
        description="Render held-out flite utterances with an avatar, track the face in every frame and "
        "measure the mouth it shows: lip gap vs the phones' opening (r), p/b/m closures shown, rounding AUC, "
        "gap span, chin travel (the chin's drop below the eye line, 5th-95th percentile span), lag and the "
        "share of frames with a face found. Prints a markdown table, then a summary "
        "line as the last line of stdout. Exit codes: 0 ok, 4 the avatar cannot be loaded.",
    )  # fmt: skip
    p.add_argument("--avatar", default="default", help="avatar package folder, or 'default'")
    p.add_argument("--utterances", type=int, default=20, help="held-out utterances to render (default 20)")
    p.add_argument("--size", default="512", help="N (NxN) | 480p | 720p | portrait | WxH (default 512)")
    p.add_argument("--fps", type=float, default=25.0)
    p.add_argument("--json", type=Path, default=None, help="also write the figures here")
    p.add_argument("--sheet", type=Path, default=None, help="write a contact sheet PNG of mouth shapes here")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def _bar(stage: str, frac: float) -> None:
    n = int(min(max(frac, 0.0), 1.0) * 30)
    sys.stderr.write(f"\r[{'#' * n}{'.' * (30 - n)}] {frac * 100:3.0f}% {stage:<24}")
    if stage == "done":
        sys.stderr.write("\n")
    sys.stderr.flush()


def run(args: argparse.Namespace) -> int:
    from livekit_avatar_plugin.evaluation.picture import measure_avatar
    from livekit_avatar_plugin._face.avatar import AvatarPackageError
    from livekit_avatar_plugin._pipeline import load_pipeline

    # A bare N means NxN here (a square face is the usual measure), on top of render's sizes.
    size = parse_size(f"{args.size}x{args.size}" if args.size.isdigit() else args.size)
    if args.utterances < 1:
        raise SystemExit("--utterances must be at least 1")
    t0 = time.perf_counter()
    try:
        load_pipeline(args.avatar)  # loaded once per process: measure_avatar reuses it
    except (AvatarPackageError, FileNotFoundError) as exc:
        log.error("cannot load avatar: %s", exc)
        return 4
    report = measure_avatar(args.avatar, utterances=args.utterances, size=size, fps=args.fps,
                            progress=None if args.quiet else _bar, sheet=args.sheet)  # fmt: skip
    seconds = time.perf_counter() - t0
    if args.json is not None:
        out = {"avatar": args.avatar, "size": list(size), "fps": args.fps, "seconds": round(seconds, 1),
               **report.as_dict()}  # fmt: skip
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=1) + "\n")
    if not args.quiet:
        sys.stderr.write(f"measured {report.n_utterances} utterances, {report.n_frames} frames in {seconds:.1f} s\n")
    print(report.table())
    print(report.summary_line())
    return 0
