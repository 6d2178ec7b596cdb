"""``livekit-avatar``: the command-line entry point.

Each subcommand lives in its own module under this package and exposes
``register(subparsers)``; this module only wires them together.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

# Subcommand modules, in the order --help lists them.
_SUBCOMMANDS = ("lipsync", "create", "render", "measure", "bench", "server", "worker")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="livekit-avatar",
        description="Local lip-synced avatars for LiveKit agents.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in _SUBCOMMANDS:
        try:
            module = importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as exc:
            # A subcommand whose own module is absent is skipped; a missing dependency
            # inside a present module is a real error and must surface.
            if exc.name == f"{__name__}.{name}":
                continue
            raise
        module.register(sub)
    # The demo lives with the viewer it serves; it imports aiohttp only when it runs.
    importlib.import_module("livekit_avatar_plugin.viewer.demo").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
