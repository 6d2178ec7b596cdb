"""Delivered frame rate under packet loss, against a real LiveKit server.

The server runs in a network namespace of its own, joined by a veth pair whose packets
are dropped at random in both directions (nftables; see tests/test_faults_network.py,
whose link this reuses). For each loss rate and run: a fresh agent + avatar + viewer,
the loss switched on, a 12-second reply, and the frame rate the viewer received in the
first 6 s after the loss started (when a simulcast layer switch used to stall a viewer)
and in the last 6 s (steady state), and the longest the viewer went without a frame over
the whole reply. Prints medians (and that gap's worst run). Needs root.

    sudo .venv/bin/python benchmarks/network_loss.py [--runs 3] [--loss 0,5,10,20]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from livekit_avatar_plugin.local_server import LocalLiveKitServer
from tests.av_harness import Subscriber, audio_onsets, delivered_fps, longest_video_gap
from tests.fakes import click_times
from tests.rooms import agent_room
from tests.test_faults_network import LossyLink

REPLY_S = 12.0


async def one_run(loss: float, quality: str) -> tuple[float, float, float, int, float]:
    link = LossyLink()
    server = LocalLiveKitServer(host=link.inner_ip, launcher=["ip", "netns", "exec", link.netns])
    try:
        link.up()
        server.start()
        async with agent_room(server.info, "bench-loss", video_quality=quality) as r:
            await r.watcher.wait_video(r.avatar.avatar_identity)
            viewer = Subscriber(server.info, r.room_name, r.avatar.avatar_identity)
            await viewer.connect()
            try:
                await asyncio.wait_for(viewer.video_track.wait(), 15)
                await asyncio.sleep(2.0)
                link.set_loss(loss)
                t0 = time.monotonic()
                handle = r.session.say(f"clicks {REPLY_S:g}")
                # The loss stays on for the reply's own length; under heavy loss the reply
                # itself arrives late (its audio rides a reliable channel), so the rates
                # are taken over fixed windows, and the loss is lifted before waiting on it.
                await asyncio.sleep(REPLY_S + 0.5)
                t1 = t0 + REPLY_S
                link.set_loss(0.0)
                await asyncio.wait_for(handle.wait_for_playout(), 180)
                done_s = time.monotonic() - t0
                await asyncio.sleep(0.5)
                cap = viewer.capture
                first = delivered_fps(cap, after=t0 + 0.3, before=t0 + 6.0)
                last = delivered_fps(cap, after=t1 - 6.0, before=t1)
                gap = longest_video_gap(cap, after=t0 + 0.3, before=t1)
                heard = len(audio_onsets(cap, after=t0, before=time.monotonic()))
                return first, last, gap, heard, done_s
            finally:
                await viewer.aclose()
    finally:
        server.stop(kill=True)
        link.down()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--loss", default="0,5,10,20", help="loss rates in percent, each way")
    parser.add_argument("--quality", default="auto", help="video_quality of the avatar")
    args = parser.parse_args()
    clicks = len(click_times(REPLY_S))
    print(f"video_quality={args.quality}, {REPLY_S:g} s reply, {args.runs} runs per rate")
    print("loss each way | fps first 6 s (median, runs) | fps last 6 s (median, runs) "
          "| longest gap (median, worst) | clicks heard | reply done after")  # fmt: skip
    for loss in [float(x) for x in args.loss.split(",")]:
        results = [await one_run(loss, args.quality) for _ in range(args.runs)]
        firsts, lasts, gaps, heard, done = zip(*results)
        print(
            f"{loss:5.0f} %       | {statistics.median(firsts):5.1f} {[round(x, 1) for x in firsts]} "
            f"| {statistics.median(lasts):5.1f} {[round(x, 1) for x in lasts]} "
            f"| {statistics.median(gaps) * 1000:4.0f} ms, {max(gaps) * 1000:4.0f} ms "
            f"| {statistics.median(heard):.0f}/{clicks} | {statistics.median(done):.1f} s",
            flush=True,
        )


if __name__ == "__main__":
    asyncio.run(main())
