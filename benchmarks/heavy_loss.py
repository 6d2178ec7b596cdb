"""Speech under heavy packet loss: does a reply start in time, and does it ever stall?

The server runs in a network namespace of its own, joined by a veth pair whose packets
are dropped at random in both directions on every link, the avatar's and the agent's
included (nftables; tests/test_faults_network.py's link). For each run: a fresh agent +
avatar + user (``--mode participant``, or ``dispatch`` to an avatar worker of the run's
own on the lossy side), the loss switched on, then ``--replies`` replies of clicks at
known times, one after another. The user listens to the avatar's audio and to
the agent's own (which speaks if it takes a reply over), and for each reply:

* ``first_audio_s``: say() -> the reply's first click heard (target <= 1.5 s);
* ``stall_s``: the longest the reply's clicks fell further behind their schedule between
  one click and the next (target: no stall over 1 s);
* clicks heard, and clicks heard twice (a take-over must not repeat speech).

Prints one line per reply and the medians. Needs root.

    sudo .venv/bin/python benchmarks/heavy_loss.py [--runs 3] [--loss 20] [--replies 3] [--mode dispatch]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.test_faults_network import (  # noqa: E402
    HEAVY_REPLY_S,
    replies_under_loss,
    server_behind_lossy_link,
)


async def one_run(loss: float, replies: int, mode: str) -> list[dict[str, float]]:
    with server_behind_lossy_link() as (link, server):
        return await replies_under_loss(link, server, loss, replies, mode=mode)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--loss", type=float, default=20.0, help="loss in percent, each way, on every link")
    parser.add_argument("--replies", type=int, default=3, help="replies per run, one after another")
    parser.add_argument("--mode", choices=["participant", "dispatch"], default="participant")
    args = parser.parse_args()
    every: list[dict[str, float]] = []
    for run in range(args.runs):
        for i, fig in enumerate(await one_run(args.loss, args.replies, args.mode)):
            every.append(fig)
            shown = ", ".join(f"{k} {v:.2f}" for k, v in fig.items())
            print(f"run {run + 1} reply {i + 1}: {shown}", flush=True)

    def med(key: str) -> float:
        values = [f[key] for f in every if key in f]
        return statistics.median(values) if values else float("nan")

    worst_first = max((f.get("first_audio_s", float("inf")) for f in every), default=float("nan"))
    worst_stall = max((f.get("stall_s", float("inf")) for f in every), default=float("nan"))
    print(f"\n{args.mode} mode, {args.loss:g} % loss each way, {len(every)} replies of {HEAVY_REPLY_S:g} s")
    print(f"first audio: median {med('first_audio_s'):.2f} s, worst {worst_first:.2f} s (target <= 1.5 s)")
    print(f"longest stall: median {med('stall_s'):.2f} s, worst {worst_stall:.2f} s (target <= 1 s)")
    print(f"clicks heard: median {med('clicks'):.0f}/{med('expected'):.0f}; repeated: {sum(f.get('repeated', 0) for f in every):.0f}")
    handed = sum(max(f.get("handed_over", 0) for f in every[i : i + args.replies]) for i in range(0, len(every), args.replies))
    print(f"replies handed to the agent's voice: {handed:.0f} of {len(every)}")
    print(f"heavy_loss first_audio_s={med('first_audio_s'):.2f} worst_stall_s={worst_stall:.2f}")


if __name__ == "__main__":
    asyncio.run(main())
