"""Churn: many avatar sessions in one process, one after another and overlapping, each with
a whole reply and an interrupted one (the shipped face). Prints what the process holds
after the first session and after all of them, whether every ``playback_finished`` was
exact, and, as a control, the RSS that LiveKit's SDK alone keeps per session (two bare
rooms publishing audio and video, no plugin code).

    .venv/bin/python benchmarks/churn.py --sequential 50 --concurrent 10

Last line: ``churn sessions=N leaked=... rss_growth=X% rss_per_session_mb=Y livekit_only_mb=Z exact=K/N``
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from livekit_avatar_plugin.local_server import LocalLiveKitServer  # noqa: E402
from tests.churn import bare_rooms, run_churn  # noqa: E402


def control_in_fresh_process(sessions: int, size: int) -> float:
    """The bare-room control, in a process of its own: after the churn the allocator has
    room to spare, and the control's growth would hide in it."""
    out = subprocess.run([sys.executable, __file__, "--control-only", str(sessions), "--size", str(size)],
                         capture_output=True, text=True, check=True).stdout
    return float(out.split("livekit_only_mb=")[1].split()[0])


async def main(args: argparse.Namespace, info) -> None:
    if args.control_only:
        print(f"livekit_only_mb={await bare_rooms(info, args.control_only, args.size):.2f}")
        return
    report = await run_churn(info, sequential=args.sequential, concurrent=args.concurrent, size=args.size,
                             progress=lambda line: print(line, flush=True))
    control = control_in_fresh_process(args.control, args.size) if args.control else float("nan")
    first, last = report.after_first, report.after_all
    print(f"\nload average {os.getloadavg()[0]:.1f}; {report.sessions} sessions in {report.seconds:.0f} s")
    print("| held | after the first | after all |\n|---|---|---|")
    for key in (*first.counts(), "pool_threads", "rss_mb"):
        print(f"| {key} | {getattr(first, key):.0f} | {getattr(last, key):.0f} |")
    if "os_threads" in report.leaked():
        print("extra OS threads:", ", ".join(report.extra_threads()))
    for line in report.wrong_playback:
        print("inexact:", line)
    per_session = (last.rss_mb - first.rss_mb) / max(report.sessions - 1, 1)
    exact = report.sessions - len(report.wrong_playback)
    print(f"churn sessions={report.sessions} leaked={report.leaked() or 'none'} "
          f"rss_growth={report.rss_growth():+.1%} rss_per_session_mb={per_session:.2f} "
          f"livekit_only_mb={control:.2f} exact={exact}/{report.sessions}")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sequential", type=int, default=50)
    ap.add_argument("--concurrent", type=int, default=10)
    ap.add_argument("--size", type=int, default=128, help="video size in pixels (square)")
    ap.add_argument("--control", type=int, default=20, help="bare-room sessions for the control (0: none)")
    ap.add_argument("--control-only", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    server = LocalLiveKitServer()
    info = server.start()
    try:
        asyncio.run(main(args, info))
    finally:
        server.stop()
