"""Two-way failover: how long after an avatar crash the face is back, in ``participant``
and ``dispatch`` modes (the shipped face; a real LiveKit server; 5 crashes each).

A participant-mode crash is the avatar's connection dropping; a dispatch-mode crash is
the avatar worker process being killed (a second worker stands by, and a fresh one is
started after each crash). For each crash it prints when the agent noticed
(``avatar_failed``), when the face was back (``avatar_recovered``) and when a viewer
received its video again; then the medians.

    .venv/bin/python benchmarks/recover.py [--runs 5] [--modes participant,dispatch]

Last line: ``recover participant_median_s=X dispatch_median_s=Y`` (crash to the viewer
seeing the face again).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from livekit import rtc  # noqa: E402

from livekit_avatar_plugin import VideoOptions  # noqa: E402
from livekit_avatar_plugin.local_server import LocalLiveKitServer  # noqa: E402
from tests.conftest import WorkerProcess  # noqa: E402
from tests.rooms import agent_room, wait_until  # noqa: E402

VIDEO = VideoOptions(width=512, height=512)


async def one_crash(info, mode: str, workers: list[WorkerProcess], agent_name: str) -> dict[str, float]:
    options = dict(face_pipeline=None, video=VIDEO)
    if mode == "dispatch":
        options.update(mode="dispatch", agent_name=agent_name, dispatch_timeout_s=20.0)
    async with agent_room(info, f"bench-recover-{mode}", **options) as r:
        avatar, watcher = r.avatar, r.watcher
        marks: dict[str, float] = {}
        avatar.on("avatar_failed", lambda _: marks.setdefault("failed", time.monotonic()))
        avatar.on("avatar_recovered", lambda _: marks.setdefault("back", time.monotonic()))

        def on_track(track: rtc.Track, _pub: object, participant: rtc.RemoteParticipant) -> None:
            if "crash" in marks and track.kind == rtc.TrackKind.KIND_VIDEO:
                marks.setdefault("seen", time.monotonic())

        watcher.room.on("track_subscribed", on_track)
        first = avatar.avatar_identity
        await watcher.wait_video(first, timeout=30)
        handle = r.session.say("clicks 3")
        await asyncio.sleep(1.0)
        marks["crash"] = time.monotonic()
        if mode == "participant":
            await avatar._transport._avatar_room.disconnect()
        else:
            serving = next(w for w in workers if first in w.rendered())
            serving.kill()
            workers.remove(serving)
        await asyncio.wait_for(handle.wait_for_playout(), 20)
        await wait_until(lambda: "seen" in marks and "back" in marks, 60, "the face back")
    t0 = marks["crash"]
    return {k: marks[k] - t0 for k in ("failed", "back", "seen")}


async def main(args: argparse.Namespace) -> None:
    server = LocalLiveKitServer()
    server.start()
    info = server.info
    results: dict[str, list[dict[str, float]]] = {}
    try:
        for mode in args.modes.split(","):
            name = f"bench-recover-{uuid.uuid4().hex[:6]}"
            workers: list[WorkerProcess] = []
            runs = results.setdefault(mode, [])
            try:
                for i in range(args.runs):
                    while mode == "dispatch" and len(workers) < 2:
                        workers.append(WorkerProcess(info, agent_name=name, capacity=2, face_pipeline=None))
                        workers[-1].wait_registered()
                    run = await one_crash(info, mode, workers, name)
                    runs.append(run)
                    print(f"{mode} crash {i + 1}: failed after {run['failed']:.2f} s, back "
                          f"{run['back']:.2f} s, viewer sees the face {run['seen']:.2f} s", flush=True)
            finally:
                for w in workers:
                    w.stop()
    finally:
        server.stop()
    print("\n| mode | crash -> avatar_failed | -> avatar_recovered | -> viewer sees the face |")
    print("|---|---|---|---|")
    for mode, runs in results.items():
        med = {k: statistics.median(r[k] for r in runs) for k in ("failed", "back", "seen")}
        print(f"| {mode} | {med['failed']:.2f} s | {med['back']:.2f} s | {med['seen']:.2f} s |")
    print("recover " + " ".join(
        f"{mode}_median_s={statistics.median(r['seen'] for r in runs):.2f}" for mode, runs in results.items()
    ))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--modes", default="participant,dispatch")
    asyncio.run(main(parser.parse_args()))
