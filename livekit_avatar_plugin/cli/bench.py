"""``livekit-avatar bench``: renderer ms/frame (512x512, 1280x720) of any avatar, its package's
load time, and 12 MP avatar creation, on one core."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

_ENV = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
        "NUMEXPR_NUM_THREADS": "1", "ORT_NUM_THREADS": "1"}


def register(subparsers) -> None:
    p = subparsers.add_parser("bench", help="benchmark the face renderer and avatar creation on one core")
    p.add_argument("--frames", type=int, default=500, help="frames per size (default 500)")
    p.add_argument("--avatar", default="default", help="avatar package to render (photo or footage; default: the shipped one)")
    p.add_argument("--skip-create", action="store_true", help="skip the 12 MP creation timing")
    p.add_argument("--background", default="#00b140",
                   help="also time rendering over this background (colour or image file; 'keep': skip)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # a fresh interpreter so BLAS/OpenMP read the one-thread settings before numpy loads
    env = dict(os.environ, **_ENV)
    cmd = [sys.executable, "-m", "livekit_avatar_plugin._render.bench", str(args.frames), "--avatar", args.avatar]
    if args.skip_create:
        cmd.append("--skip-create")
    cmd += ["--background", args.background]
    return subprocess.call(cmd, env=env)
