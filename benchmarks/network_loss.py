"""Delivered frame rate under packet loss, against a real LiveKit server.

The server runs in a network namespace of its own, joined by a veth pair whose packets
are dropped at random in both directions (nftables; see tests/test_faults_network.py,
whose link this reuses). For each loss rate and run: a fresh agent + avatar + viewer,
the loss switched on, a 12-second reply, and the frame rate the viewer received in the
first 6 s after the loss started (when a simulcast layer switch used to stall a viewer)
and in the last 6 s (steady state), and the longest the viewer went without a frame over
the whole reply, and the fewest frames it got in any one second of it. Prints medians
(and the worst run of those two). Needs root.

``--link viewer`` drops only the viewer's media, as on a user's lossy network, with the
avatar's own link to the server clean (a worker in a data centre); the default drops on
every link. ``--viewer-layer low`` has the viewer ask for the lowest simulcast layer, as
a small video element does. ``--busy N`` keeps N processes spinning on the CPU meanwhile.

    sudo .venv/bin/python benchmarks/network_loss.py [--runs 3] [--loss 0,5,10,20]
        [--quality auto] [--codec vp8] [--link all|viewer] [--viewer-layer high|low] [--busy 2]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.av_harness import (  # noqa: E402
    Subscriber,
    audio_onsets,
    delivered_fps,
    longest_video_gap,
    worst_second_frames,
)
from tests.fakes import click_times  # noqa: E402
from tests.rooms import agent_room  # noqa: E402
from tests.test_faults_network import server_behind_lossy_link  # noqa: E402

REPLY_S = 12.0


async def one_run(
    loss: float, args: argparse.Namespace
) -> tuple[float, float, float, int, int, float, int]:
    with server_behind_lossy_link() as (link, server):
        async with agent_room(
            server.info, "bench-loss", video_quality=args.quality, video_codec=args.codec
        ) as r:
            await r.watcher.wait_video(r.avatar.avatar_identity)
            viewer = Subscriber(server.info, r.room_name, r.avatar.avatar_identity)
            await viewer.connect()
            try:
                await asyncio.wait_for(viewer.video_track.wait(), 15)
                if args.viewer_layer == "low":
                    viewer.ask_for_lowest_layer()
                await asyncio.sleep(2.0)
                ports = await viewer.udp_ports() if args.link == "viewer" else None
                link.set_loss(loss, client_udp_ports=ports)
                t0 = time.monotonic()
                handle = r.session.say(f"clicks {REPLY_S:g}")
                # The loss stays on for the reply's own length; under heavy loss the reply
                # itself arrives late (its audio rides a reliable channel), so the rates
                # are taken over fixed windows, and the loss is lifted before waiting on it.
                await asyncio.sleep(REPLY_S + 0.5)
                t1 = t0 + REPLY_S
                dropped = link.dropped_packets()
                link.set_loss(0.0)
                await asyncio.wait_for(handle.wait_for_playout(), 180)
                done_s = time.monotonic() - t0
                await asyncio.sleep(0.5)
                cap = viewer.capture
                first = delivered_fps(cap, after=t0 + 0.3, before=t0 + 6.0)
                last = delivered_fps(cap, after=t1 - 6.0, before=t1)
                gap = longest_video_gap(cap, after=t0 + 0.3, before=t1)
                worst = worst_second_frames(cap, after=t0 + 0.3, before=t1)
                heard = len(audio_onsets(cap, after=t0, before=time.monotonic()))
                return first, last, gap, worst, heard, done_s, dropped
            finally:
                await viewer.aclose()


def _spin() -> None:
    while True:
        pass


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--loss", default="0,5,10,20", help="loss rates in percent, each way")
    parser.add_argument("--quality", default="auto", help="video_quality of the avatar")
    parser.add_argument("--codec", default="vp8", help="video_codec of the avatar")
    parser.add_argument(
        "--link", choices=("all", "viewer"), default="all",
        help="all: loss on every participant's link, the avatar's own included; viewer: "
        "on the viewer's media only (the avatar's link to the server stays clean)",
    )  # fmt: skip
    parser.add_argument(
        "--viewer-layer", choices=("high", "low"), default="high",
        help="the simulcast layer the viewer asks for (low: as a small video element would)",
    )  # fmt: skip
    parser.add_argument("--busy", type=int, default=0, help="CPU-spinning processes alongside")
    args = parser.parse_args()
    spinners = [multiprocessing.Process(target=_spin, daemon=True) for _ in range(args.busy)]
    for proc in spinners:
        proc.start()
    clicks = len(click_times(REPLY_S))
    print(f"video_quality={args.quality}, video_codec={args.codec}, loss on {args.link} "
          f"link(s), viewer asks for the {args.viewer_layer} layer, {REPLY_S:g} s reply, "
          f"{args.runs} runs per rate, {args.busy} CPU-spinning processes alongside")  # fmt: skip
    print("loss each way | fps first 6 s (median, runs) | fps last 6 s (median, runs) "
          "| longest gap (median, worst) | fewest frames in a second (median, worst) "
          "| clicks heard | reply done after | packets dropped")  # fmt: skip
    try:
        for loss in [float(x) for x in args.loss.split(",")]:
            results = [await one_run(loss, args) for _ in range(args.runs)]
            firsts, lasts, gaps, worsts, heard, done, dropped = zip(*results)
            print(
                f"{loss:5.0f} %       | {statistics.median(firsts):5.1f} {[round(x, 1) for x in firsts]} "
                f"| {statistics.median(lasts):5.1f} {[round(x, 1) for x in lasts]} "
                f"| {statistics.median(gaps) * 1000:4.0f} ms, {max(gaps) * 1000:4.0f} ms "
                f"| {statistics.median(worsts):.0f}, {min(worsts)} {list(worsts)} "
                f"| {statistics.median(heard):.0f}/{clicks} | {statistics.median(done):.1f} s "
                f"| {statistics.median(dropped):.0f}",
                flush=True,
            )
    finally:
        for proc in spinners:
            proc.terminate()


if __name__ == "__main__":
    asyncio.run(main())
