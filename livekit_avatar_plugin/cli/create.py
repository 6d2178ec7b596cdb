"""``livekit-avatar create PHOTO -o AVATAR``: build an avatar package from a portrait."""

from __future__ import annotations

import argparse
import logging
import sys
import time


def register(subparsers) -> None:
    p = subparsers.add_parser("create", help="create an avatar package from a portrait photo",
                              description="Create an avatar package from one portrait photo. Exit codes: "
                              "0 ok, 11 no face, 12 face under 80 px, 13 corrupt image, 14 not an image, "
                              "15 image over 40 MP, 10 other creation error.")
    p.add_argument("photo", help="portrait photo (JPEG, PNG, TIFF, WebP, ...)")
    p.add_argument("-o", "--output", required=True, help="avatar package folder to write")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def _bar(stage: str, frac: float) -> None:
    n = int(frac * 30)
    sys.stderr.write(f"\r[{'#' * n}{'.' * (30 - n)}] {frac * 100:3.0f}% {stage:<20}")
    if frac >= 1:
        sys.stderr.write("\n")
    sys.stderr.flush()


def run(args: argparse.Namespace) -> int:
    from livekit_avatar_plugin.face.avatar import AvatarCreationError, create_avatar

    t0 = time.perf_counter()
    try:
        av = create_avatar(args.photo, args.output, progress=None if args.quiet else _bar)
    except AvatarCreationError as exc:
        if not args.quiet:
            sys.stderr.write("\n")
        logging.getLogger("livekit_avatar_plugin.create").error("%s: %s", type(exc).__name__, exc)
        return exc.exit_code
    print(f"avatar written to {av.path} ({time.perf_counter() - t0:.2f} s)")
    return 0
