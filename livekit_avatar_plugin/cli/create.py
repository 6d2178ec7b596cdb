"""``livekit-avatar create INPUT -o AVATAR``: an avatar package from a portrait photo or from
a talking clip of the person (told apart by the file's content, not its name)."""

from __future__ import annotations

import argparse
import logging
import re
import sys
import time
from typing import Any

from .render import parse_size

_EXIT_CODES = ("0 ok, 10 other creation error, 11 no face, 12 face under 80 px, 13 corrupt image, "
               "14 neither an image nor a video, 15 image over 40 MP, 16 corrupt or truncated video, "
               "17 video file or frames too large, 18 video over 10 min, 19 video under 5 s, "
               "20 a still image in a video container, 21 a part range outside the clip")


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "create", help="create an avatar package from a portrait photo or a talking clip",
        description="Create an avatar package from one portrait photo (a one-shot avatar) or from "
        "a clip of the person talking to camera (a footage avatar: their own frames, teeth and lips; "
        "MP4, MOV, WebM or MKV, 5 s to 10 min). Exit codes: " + _EXIT_CODES + ".")
    p.add_argument("input", metavar="PHOTO_OR_CLIP", help="portrait photo (JPEG, PNG, ...) or video clip")
    p.add_argument("-o", "--output", required=True, help="avatar package folder to write")
    for part, what in (("idle", "calm, silent footage"), ("listening", "silent footage listening attentively"),
                       ("talking", "the person speaking")):
        p.add_argument(f"--{part}", metavar="A-B", type=_seconds_range,
                       help=f"clip only: {what}, from A to B seconds (default: found from the audio and motion)")
    p.add_argument("--size", default="512", help="clip only: canvas the loops are cropped to: 512, 480p, 720p, "
                   "portrait or WxH (default 512; the avatar renders at any size)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def _seconds_range(text: str) -> tuple[float, float]:
    m = re.fullmatch(r"\s*(\d+(?:\.\d*)?)\s*-\s*(\d+(?:\.\d*)?)\s*", text)
    if not m or float(m.group(1)) >= float(m.group(2)):
        raise argparse.ArgumentTypeError(f"{text!r} is not a time range like 12-27.5 (seconds, start before end)")
    return float(m.group(1)), float(m.group(2))


def _bar(stage: str, frac: float) -> None:
    n = int(frac * 30)
    sys.stderr.write(f"\r[{'#' * n}{'.' * (30 - n)}] {frac * 100:3.0f}% {stage:<26}")
    if frac >= 1:
        sys.stderr.write("\n")
    sys.stderr.flush()


class _Held(logging.Handler):
    """Keeps the builders' warnings while the bar is drawn, to print them after it."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def run(args: argparse.Namespace) -> int:
    from livekit_avatar_plugin._face.avatar import AvatarCreationError, create_avatar
    from livekit_avatar_plugin._face.video import looks_like_video

    log = logging.getLogger("livekit_avatar_plugin.create")
    is_video = looks_like_video(args.input)
    parts = {k: getattr(args, k) for k in ("idle", "listening", "talking") if getattr(args, k) is not None}
    if parts and not is_video:
        log.error("--idle, --listening and --talking apply to a video clip; %s is not one", args.input)
        return 2
    held = _Held()
    face_log = logging.getLogger("livekit_avatar_plugin")
    if not args.quiet:  # warnings would break the bar's line: print them after it
        face_log.addHandler(held)
        face_log.propagate = False
    t0 = time.perf_counter()
    av: Any
    try:
        if is_video:
            from livekit_avatar_plugin._face.footage_build import create_footage_avatar

            av = create_footage_avatar(args.input, args.output, parts=parts, canvas=parse_size(args.size),
                                       progress=None if args.quiet else _bar)
        else:
            av = create_avatar(args.input, args.output, progress=None if args.quiet else _bar)
    except AvatarCreationError as exc:
        if not args.quiet:
            sys.stderr.write("\n")
        _release(face_log, held)
        log.error("%s: %s", type(exc).__name__, exc)
        return exc.exit_code
    _release(face_log, held)
    print(f"avatar written to {av.path} ({time.perf_counter() - t0:.1f} s)")
    if is_video:
        _summary(av)
    return 0


def _release(face_log: logging.Logger, held: _Held) -> None:
    face_log.removeHandler(held)
    face_log.propagate = True
    for record in held.records:
        logging.getLogger(record.name).handle(record)


def _summary(av) -> None:
    m = av.manifest
    size = sum(f["bytes"] for f in m["files"].values())
    for name, loop in m["loops"].items():
        src = f"{loop['source_s'][0]:g}-{loop['source_s'][1]:g} s" if "source_s" in loop else f"the {loop['stand_in']} loop stands in"
        print(f"  {name:<10} {src}")
    print(f"  mouths     {m['atlas']['crops']} crops from {m['stats']['talking_s']:g} s of talking")
    offset = "not measured (no audio)" if m["av_offset_r"] is None else f"{m['av_offset_ms']:+.0f} ms (picture against sound)"
    print(f"  A/V offset {offset}")
    print(f"  package    {size / 2**20:.1f} MB, canvas {m['canvas'][0]}x{m['canvas'][1]}")
