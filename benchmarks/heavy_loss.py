"""Speech under heavy packet loss: does a reply start in time, and does it ever stall?

The server runs in a network namespace of its own, joined by a veth pair whose packets
are dropped at random in both directions on every link, the avatar's and the agent's
included (nftables; tests/test_faults_network.py's link). For each run: a fresh agent +
``participant`` avatar + user, the loss switched on, then ``--replies`` replies of
clicks at known times, one after another. The user listens to the avatar's audio and to
the agent's own (which speaks if it takes a reply over), and for each reply:

* ``first_audio_s``: say() -> the reply's first click heard (target <= 1.5 s);
* ``stall_s``: the longest the reply's clicks fell further behind their schedule between
  one click and the next (target: no stall over 1 s);
* clicks heard, and clicks heard twice (a take-over must not repeat speech).

Prints one line per reply and the medians. Needs root.

    sudo .venv/bin/python benchmarks/heavy_loss.py [--runs 3] [--loss 20] [--replies 3]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.av_harness import click_onsets  # noqa: E402
from tests.fakes import click_times  # noqa: E402
from tests.rooms import agent_room  # noqa: E402
from tests.test_faults_network import server_behind_lossy_link  # noqa: E402

REPLY_S = 6.0


def reply_figures(onsets: list[float], said_at: float) -> dict[str, float]:
    """Figures of one reply from the arrival times of its clicks (both voices merged)."""
    schedule = click_times(REPLY_S)
    out: dict[str, float] = {"clicks": float(len(onsets)), "expected": float(len(schedule))}
    if not onsets:
        return out
    out["first_audio_s"] = onsets[0] - said_at
    # Each heard click matched to its place in the schedule by arrival order; a click heard
    # twice shows as more onsets than the schedule has.
    out["repeated"] = float(max(0, len(onsets) - len(schedule)))
    n = min(len(onsets), len(schedule))
    late = np.asarray(onsets[:n]) - (onsets[0] + schedule[:n] - schedule[0])
    out["stall_s"] = float(np.max(np.diff(late))) if n > 1 else 0.0
    out["drift_s"] = float(late[-1]) if n else 0.0
    return out


async def one_run(loss: float, replies: int) -> list[dict[str, float]]:
    results: list[dict[str, float]] = []
    with server_behind_lossy_link() as (link, server):
        async with agent_room(server.info, "bench-heavy") as r:
            # The watcher is the user: it records every audio track, the avatar's and, should
            # the agent take a reply over, the agent's own.
            await r.watcher.wait_video(r.avatar.avatar_identity)
            voices = (r.avatar.avatar_identity, r.agent_room.local_participant.identity)
            await asyncio.sleep(2.0)
            link.set_loss(loss)
            for _ in range(replies):
                said_at = time.monotonic()
                handle = r.session.say(f"clicks {REPLY_S:g}")
                await asyncio.wait_for(handle.wait_for_playout(), 120)
                await asyncio.sleep(1.0)  # the end of the reply reaches the user
                heard = sorted(t for who in voices for t in click_onsets(r.watcher.audio.get(who, []), after=said_at))
                results.append(reply_figures(heard, said_at))
                results[-1]["dropped"] = float(link.dropped_packets())
            link.set_loss(0.0)
    return results


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--loss", type=float, default=20.0, help="loss in percent, each way, on every link")
    parser.add_argument("--replies", type=int, default=3, help="replies per run, one after another")
    args = parser.parse_args()
    every: list[dict[str, float]] = []
    for run in range(args.runs):
        for i, fig in enumerate(await one_run(args.loss, args.replies)):
            every.append(fig)
            shown = ", ".join(f"{k} {v:.2f}" for k, v in fig.items())
            print(f"run {run + 1} reply {i + 1}: {shown}", flush=True)

    def med(key: str) -> float:
        values = [f[key] for f in every if key in f]
        return statistics.median(values) if values else float("nan")

    worst_first = max((f.get("first_audio_s", float("inf")) for f in every), default=float("nan"))
    worst_stall = max((f.get("stall_s", float("inf")) for f in every), default=float("nan"))
    print(f"\n{args.loss:g} % loss each way, {len(every)} replies of {REPLY_S:g} s")
    print(f"first audio: median {med('first_audio_s'):.2f} s, worst {worst_first:.2f} s (target <= 1.5 s)")
    print(f"longest stall: median {med('stall_s'):.2f} s, worst {worst_stall:.2f} s (target <= 1 s)")
    print(f"clicks heard: median {med('clicks'):.0f}/{med('expected'):.0f}; repeated: {sum(f.get('repeated', 0) for f in every):.0f}")
    print(f"heavy_loss first_audio_s={med('first_audio_s'):.2f} worst_stall_s={worst_stall:.2f}")


if __name__ == "__main__":
    asyncio.run(main())
