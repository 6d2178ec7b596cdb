"""``livekit-avatar worker``: serve avatars to agents in dispatch mode.

Agents using ``AvatarSession(mode="dispatch", agent_name=...)`` get their avatar rendered
by a worker started with this command (on this machine or another one that reaches the
same LiveKit server).
"""

from __future__ import annotations

import argparse
import asyncio
import os

from pydantic import ValidationError

from .._native_logs import stop_forwarding_native_logs
from .._config import DEFAULT_AVATAR_AGENT_NAME

# Jobs per worker process: see docs/benchmarks.md, "Churn".
DEFAULT_MAX_JOBS = 50


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "worker",
        help="run an avatar worker that LiveKit dispatches avatar jobs to (mode='dispatch')",
        description=(
            "Register with a LiveKit server as an agent worker and render avatars for agents "
            "that use AvatarSession(mode='dispatch'). Needs LIVEKIT_URL, LIVEKIT_API_KEY and "
            "LIVEKIT_API_SECRET (or the options below)."
        ),
    )
    p.add_argument(
        "--agent-name",
        default=os.environ.get("LIVEKIT_AVATAR_AGENT_NAME", DEFAULT_AVATAR_AGENT_NAME),
        help=f"name agents dispatch to (default {DEFAULT_AVATAR_AGENT_NAME!r})",
    )
    p.add_argument(
        "--capacity", type=int, default=4, help="avatars this process renders at once (default 4)"
    )
    p.add_argument(
        "--face-pipeline",
        metavar="MODULE:ATTR",
        help="a FacePipeline (instance, class or factory) to use instead of the shipped models",
    )
    p.add_argument("--avatar", default="default", help="avatar to load at start-up")
    p.add_argument("--url", default=os.environ.get("LIVEKIT_URL"), help="default: LIVEKIT_URL")
    p.add_argument(
        "--api-key", default=os.environ.get("LIVEKIT_API_KEY"), help="default: LIVEKIT_API_KEY"
    )
    p.add_argument(
        "--api-secret",
        default=os.environ.get("LIVEKIT_API_SECRET"),
        help="default: LIVEKIT_API_SECRET",
    )
    p.add_argument(
        "--http-port", type=int, default=0, help="health-check port (default: a free one)"
    )
    p.add_argument(
        "--server-target-load",
        type=float,
        default=0.7,
        help="the server's agents.target_load, above which it stops dispatching (default 0.7)",
    )
    p.add_argument(
        "--drain-timeout",
        type=float,
        default=60.0,
        help="on SIGTERM/SIGINT, seconds running avatars may go on (default 60)",
    )
    p.add_argument(
        "--max-jobs",
        type=int,
        default=DEFAULT_MAX_JOBS,
        help="jobs a worker process takes before a fresh process takes over, which bounds "
        "what a long-lived process gathers (native threads and memory that LiveKit's "
        "library keeps when the server ends a room); 0: one process for ever "
        f"(default {DEFAULT_MAX_JOBS})",
    )
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from .._dispatch.worker import AvatarWorker, AvatarWorkerOptions, limit_malloc_arenas

    missing = [
        name
        for name, value in (
            ("LIVEKIT_URL (--url)", args.url),
            ("LIVEKIT_API_KEY (--api-key)", args.api_key),
            ("LIVEKIT_API_SECRET (--api-secret)", args.api_secret),
        )
        if not value
    ]
    if missing:
        print("error: the avatar worker needs " + ", ".join(missing))
        return 2
    try:
        options = AvatarWorkerOptions(
            agent_name=args.agent_name,
            capacity=args.capacity,
            face_pipeline=args.face_pipeline,
            avatar=args.avatar,
            url=args.url,
            api_key=args.api_key,
            api_secret=args.api_secret,
            http_port=args.http_port,
            server_target_load=args.server_target_load,
            drain_timeout_s=args.drain_timeout,
            max_jobs=getattr(args, "max_jobs", 0) or None,
        )
    except ValidationError as exc:
        print(f"error: {exc}")
        return 2
    if options.max_jobs:
        from .._dispatch.supervisor import Supervisor

        asyncio.run(Supervisor(options, verbose=getattr(args, "verbose", False)).run())
        return 0
    # This process is ours: LiveKit's native debug log costs the avatars CPU and the GIL.
    limit_malloc_arenas()
    stop_forwarding_native_logs()
    asyncio.run(AvatarWorker(options).run())
    return 0
