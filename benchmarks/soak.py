"""Soak: avatar session(s) speaking for a long time; does memory grow, does fps sag?

Same set-up as ``benchmarks/concurrency.py`` (real server on loopback, one dispatch-mode
worker process with the real face at 512x512, 25 fps; agents speaking without pause;
a viewer per room). Samples the worker's RSS, each viewer's delivered fps and the CPU of
the worker, the harness, the server and the rest of the machine every ``--every``
seconds, and reports RSS growth from the first sample after warm-up to the last (target
< 5 %) and what the samples under 24 fps had in common. Writes
``docs/img/bench_soak.json`` and ``bench_soak.png``.

    .venv/bin/python benchmarks/soak.py --duration 1800        # the 30-minute target run
    .venv/bin/python benchmarks/soak.py --duration 60 --every 5  # a quick check
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from concurrency import IMG, LocalLiveKitServer, _server_pid, run_sessions  # noqa: E402


def plot(timeline: list[dict[str, Any]], path: Path, sessions: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = [s["t_s"] / 60 for s in timeline]
    fig, (a, b, c) = plt.subplots(3, 1, figsize=(7, 7), sharex=True, constrained_layout=True)
    rss = [s["worker_rss_mb"] for s in timeline]
    a.plot(t, rss, "-")
    a.axhline(rss[0] * 1.05, color="red", lw=0.8, ls=":")  # the growth target
    a.set(ylabel="worker RSS (MB)", title=f"Soak: {sessions} session(s), 512x512 at 25 fps")
    a.set_ylim(rss[0] * 0.97, max(max(rss), rss[0] * 1.05) * 1.01)
    for i in range(sessions):
        b.plot(t, [s["fps"][i] for s in timeline], lw=0.8, label=f"session {i + 1}")
    b.axhline(24, color="red", lw=0.8, ls=":")
    b.set(ylabel="delivered fps", ylim=(0, 27))
    c.plot(t, [s["worker_cores"] for s in timeline], label="avatar worker")
    c.plot(t, [s["harness_cores"] + s["server_cores"] for s in timeline], label="agents, viewers, server")
    c.plot(t, [s["other_cores"] for s in timeline], label="rest of the machine")
    c.set(xlabel="minutes", ylabel="CPU (cores of 2)", ylim=(0, 2.05))
    c.legend(fontsize=7, loc="upper left")
    ms = c.twinx()
    ms.plot(t, [s["worker_ms_per_frame"] for s in timeline], "k:", lw=0.8)
    ms.set_ylabel("worker CPU ms per frame (dotted)")
    fig.savefig(path, dpi=110)
    print(f"wrote {path}")


def dips(timeline: list[dict[str, Any]], below: float = 24.0) -> dict[str, Any]:
    """Samples whose slowest session fell under ``below`` fps, against the rest: was the
    worker working harder per frame (slower cores) or the rest of the machine busier?"""

    def mean(samples: list[dict[str, Any]], key: str) -> float | None:
        return statistics.fmean(s[key] for s in samples) if samples else None

    low = [s for s in timeline if min(s["fps"]) < below]
    ok = [s for s in timeline if min(s["fps"]) >= below]
    keys = ("worker_cores", "worker_ms_per_frame", "other_cores", "load_average")
    return {
        "samples_below": len(low),
        "samples_at_or_above": len(ok),
        "below": {k: mean(low, k) for k in keys},
        "at_or_above": {k: mean(ok, k) for k in keys},
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=1800.0, help="seconds (default 30 min)")
    parser.add_argument("--sessions", type=int, default=1)
    parser.add_argument("--every", type=float, default=30.0, help="sampling period (s)")
    parser.add_argument("--warmup", type=float, default=10.0)
    parser.add_argument("--out", default=str(IMG), help="folder for JSON and plot; '' for none")
    args = parser.parse_args()
    with LocalLiveKitServer() as info:
        result = await run_sessions(
            info,
            _server_pid(info),
            args.sessions,
            duration=args.duration,
            warmup=args.warmup,
            sample_every=args.every,
        )
    timeline = result.timeline
    first, last = timeline[0]["worker_rss_mb"], timeline[-1]["worker_rss_mb"]
    fps = [f for s in timeline for f in s["fps"]]
    report = {
        "duration_s": args.duration,
        "sessions": args.sessions,
        "rss_first_mb": first,
        "rss_last_mb": last,
        "rss_growth_percent": 100.0 * (last - first) / first,
        "fps_min_sample": min(fps),
        "fps_median_sample": statistics.median(fps),
        "load_average_before": result.load_average,
        "fps_dips": dips(timeline),
        "timeline": timeline,
    }
    print(json.dumps({k: v for k, v in report.items() if k != "timeline"}, indent=1))
    print(
        f"RSS {first:.0f} -> {last:.0f} MB ({report['rss_growth_percent']:+.1f} %, target < 5 %); "
        f"fps per {args.every:g} s sample: min {min(fps):.1f}, median {statistics.median(fps):.1f}"
    )
    print("samples under 24 fps vs the rest:", json.dumps(report["fps_dips"]))
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "bench_soak.json").write_text(json.dumps(report, indent=1))
        plot(timeline, out / "bench_soak.png", args.sessions)


if __name__ == "__main__":
    asyncio.run(main())
