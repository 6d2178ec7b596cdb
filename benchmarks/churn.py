"""Churn: many avatar sessions in one process, one after another and overlapping, each with
a whole reply and an interrupted one (the shipped face). Prints what the process holds
after the first session and after all of them, whether every ``playback_finished`` was
exact, and, as a control, the RSS that LiveKit's SDK alone keeps per session (two bare
rooms publishing audio and video, no plugin code).

    .venv/bin/python benchmarks/churn.py --sequential 50 --concurrent 10
    .venv/bin/python benchmarks/churn.py --mode dispatch [--max-jobs N]

Last line: ``churn sessions=N leaked=... rss_growth=X% rss_per_session_mb=Y livekit_only_mb=Z exact=K/N``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from livekit_avatar_plugin.local_server import LocalLiveKitServer  # noqa: E402
from tests.churn import bare_rooms, run_churn, run_worker_churn  # noqa: E402
from tests.conftest import PATTERN_PIPELINE, WorkerProcess  # noqa: E402


def control_in_fresh_process(sessions: int, size: int) -> float:
    """The bare-room control, in a process of its own: after the churn the allocator has
    room to spare, and the control's growth would hide in it."""
    out = subprocess.run([sys.executable, __file__, "--control-only", str(sessions), "--size", str(size)],
                         capture_output=True, text=True, check=True).stdout
    return float(out.split("livekit_only_mb=")[1].split()[0])


async def dispatch_churn(args: argparse.Namespace, info) -> None:
    """The same sessions with the avatar in a ``livekit-avatar worker`` (shipped face)."""
    face = PATTERN_PIPELINE if args.face == "pattern" else None
    worker = WorkerProcess(info, agent_name="churn-worker", face_pipeline=face, capacity=max(args.concurrent, 4),
                           max_jobs=args.max_jobs)  # fmt: skip
    try:
        await asyncio.to_thread(worker.wait_registered)
        report = await run_worker_churn(info, worker.proc.pid, worker.agent_name, sequential=args.sequential,
                                        concurrent=args.concurrent, size=args.size,
                                        generations=lambda: len(worker.generations()) or 1,
                                        progress=lambda line: print(line, flush=True))  # fmt: skip
    finally:
        worker.stop()
    first, last = report.after_first, report.after_all
    print(f"\nload average {os.getloadavg()[0]:.1f}; {args.face} face; {report.sessions} sessions in {report.seconds:.0f} s; "
          f"max_jobs {args.max_jobs if args.max_jobs is not None else 'the default'}: {report.generations} worker generation(s)")
    print("| the worker's processes hold | after the first | after all |\n|---|---|---|")
    for key in (*first.counts(), "rss_mb"):
        print(f"| {key} | {getattr(first, key):.0f} | {getattr(last, key):.0f} |")
    for line in report.wrong_playback:
        print("inexact:", line)
    if "os_threads" in report.leaked():
        print("extra OS threads:", ", ".join(report.extra_threads()))
    series = report.rss_series
    print("worker MB after each session in a row: " + " ".join(f"{mb:.0f}" for mb in series))
    if args.json:
        Path(args.json).write_text(json.dumps({"max_jobs": args.max_jobs, "rss_series": series}))
    exact = report.sessions - len(report.wrong_playback)
    print(f"peak {max(series):.0f} MB = {max(series) / series[0] - 1:+.1%} over the first session's")
    print(f"churn mode=dispatch sessions={report.sessions} generations={report.generations} "
          f"leaked={report.leaked() or 'none'} rss_growth={report.rss_growth():+.1%} "
          f"exact={exact}/{report.sessions}")


def plot(paths: list[str]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.2), dpi=110)
    for spec in paths:
        path, _, label = spec.partition("=")
        run = json.loads(Path(path).read_text())
        label = label or (f"--max-jobs {run['max_jobs']}" if run["max_jobs"] else "one process (--max-jobs 0)")
        ax.plot(range(1, len(run["rss_series"]) + 1), run["rss_series"], label=label)
    ax.set_xlabel("avatar sessions served, one after another")
    ax.set_ylabel("worker RSS, MB (all its processes)")
    ax.set_title("Avatar worker memory over sessions (shipped face, 128 px)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    out = ROOT / "docs/img/worker_churn.png"
    fig.savefig(out)
    print(f"wrote {out}")


async def main(args: argparse.Namespace, info) -> None:
    if args.mode == "dispatch":
        await dispatch_churn(args, info)
        return
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
    ap.add_argument("--mode", choices=("participant", "dispatch"), default="participant",
                    help="dispatch: the avatars render in a livekit-avatar worker process")
    ap.add_argument("--max-jobs", type=int, default=None,
                    help="dispatch: the worker's --max-jobs (default: the command's; 0: never)")
    ap.add_argument("--json", help="dispatch: write the worker's RSS after each session here")
    ap.add_argument("--face", choices=("shipped", "pattern"), default="shipped",
                    help="dispatch: the worker's face; the test pattern costs little CPU, so ten "
                         "avatars at once fit two cores")
    ap.add_argument("--plot", nargs="+", metavar="JSON", help="plot saved --json runs (PATH or PATH=LABEL) to docs/img/worker_churn.png")
    args = ap.parse_args()
    if args.plot:
        plot(args.plot)
        sys.exit(0)
    server = LocalLiveKitServer()
    info = server.start()
    try:
        asyncio.run(main(args, info))
    finally:
        server.stop()
