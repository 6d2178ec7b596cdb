"""``livekit-avatar server``: a local LiveKit server for development (loopback only)."""

from __future__ import annotations

import argparse
import signal
import threading

from ..local_server import (
    DEV_API_KEY,
    DEV_API_SECRET,
    LocalLiveKitServer,
    ServerUnavailableError,
    find_server_binary,
)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "server",
        help="run a local LiveKit dev server on 127.0.0.1 (builds it once with Go if needed)",
    )
    p.add_argument("--port", type=int, default=7880, help="HTTP/WebSocket port (default 7880)")
    p.add_argument(
        "--build", action="store_true", help="only make sure the binary exists (build + cache)"
    )
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    try:
        binary = find_server_binary(build=True)
    except ServerUnavailableError as exc:
        print(f"error: {exc}")
        return 2
    if args.build:
        print(f"livekit-server: {binary}")
        return 0
    server = LocalLiveKitServer(port=args.port, binary=binary)
    info = server.start()
    print(f"LIVEKIT_URL={info.url}")
    print(f"LIVEKIT_API_KEY={DEV_API_KEY}")
    print(f"LIVEKIT_API_SECRET={DEV_API_SECRET}")
    print("Ctrl-C to stop.", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0
