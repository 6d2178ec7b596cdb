"""Initial video quality, ``auto`` vs ``high``, as a real subscriber receives it.

A viewer waits in a fresh room; the agent and its avatar (with a detailed moving test
pattern, so the encoder has use for every bit) join it. From the viewer's first decoded
frame of the avatar, every 100 ms for 6 s: the received resolution and bitrate, and on
the avatar's side WebRTC's bandwidth estimate and the encoder's target bitrate. Prints
medians over the runs side by side and writes docs/img/video_quality_start.png.

``high (not held back)`` lets the viewer in as soon as the track is published instead
of once WebRTC's bandwidth estimate covers the cap: the comparison for that choice.
``high, vp9`` shows where the ramp that remains comes from: VP8's rate control pays for
the key frame out of the next second's frames; VP9's does not.

    .venv/bin/python benchmarks/video_quality.py [--runs 3]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from livekit_avatar_plugin import VideoOptions, participant  # noqa: E402
from livekit_avatar_plugin.local_server import LocalLiveKitServer  # noqa: E402
from tests.quality_probe import QualityProbe, probe_quality  # noqa: E402

SETTINGS = {
    "auto (1280x720, simulcast)": dict(video=VideoOptions(quality="auto", width=1280, height=720)),
    "high (720p, 2000 kbps)": dict(video_quality="high"),
    "high, vp9": dict(video=VideoOptions(quality="high", codec="vp9")),
    "high (not held back)": dict(video_quality="high"),
}
PLOTTED = list(SETTINGS)[:3]


@contextlib.contextmanager
def held_back(enabled: bool):
    saved = participant._BANDWIDTH_WAIT_MAX_S
    if not enabled:
        participant._BANDWIDTH_WAIT_MAX_S = 0.0  # lets viewers in at once
    try:
        yield
    finally:
        participant._BANDWIDTH_WAIT_MAX_S = saved


def plot(results: dict[str, list[QualityProbe]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.2), constrained_layout=True)
    for name, colour in zip(PLOTTED, ["tab:blue", "tab:orange", "tab:green"]):
        probes = results[name]
        p = probes[len(probes) // 2]
        ts = [s.t for s in p.samples]
        ax1.step([0.0, *ts], [p.first_frame_size[1], *[s.height for s in p.samples]],
                 where="post", color=colour, label=name)  # fmt: skip
        windowed = [t for t in ts if t >= 0.5]
        ax2.plot(windowed, [p.kbps_between(t - 0.5, t) for t in windowed], color=colour,
                 label=f"{name}: received")  # fmt: skip
        ax2.plot(ts, [s.target_kbps for s in p.samples], color=colour, linestyle="--",
                 label=f"{name}: encoder target")  # fmt: skip
    ax1.set(xlabel="seconds after the viewer's first frame", ylabel="received height (px)",
            title="Resolution", ylim=(0, 780))  # fmt: skip
    ax2.set(xlabel="seconds after the viewer's first frame", ylabel="kbps",
            title="Bitrate (received: over the last 0.5 s, key frame included)")  # fmt: skip
    ax1.legend(loc="lower right")
    ax2.legend(fontsize=7, loc="lower right")
    fig.savefig(path, dpi=110)
    print(f"wrote {path}")


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--plot", type=Path, default=ROOT / "docs/img/video_quality_start.png")
    args = parser.parse_args()
    results: dict[str, list[QualityProbe]] = {name: [] for name in SETTINGS}
    with LocalLiveKitServer() as info:
        for _ in range(args.runs):
            for name, options in SETTINGS.items():
                with held_back("not held back" not in name):
                    results[name].append(await probe_quality(info, seconds=6.0, **options))
    print(
        f"{'setting':<28} {'first frame':>11} {'@1s':>9} {'@2s':>9} {'pub->frame':>10} "
        f"{'est@sub':>8} {'target@0.1s':>11} {'key kB':>6} {'kbps 0-1s':>9} {'kbps 0-2s':>9} "
        f"{'kbps 4-6s':>9} {'fps 0-2s':>8}"
    )
    for name, probes in results.items():
        def med(f):
            return statistics.median(f(p) for p in probes)

        mid = probes[len(probes) // 2]
        print(
            f"{name:<28} {'x'.join(map(str, mid.first_frame_size)):>11} "
            f"{'x'.join(map(str, mid.size_at(1.0))):>9} {'x'.join(map(str, mid.size_at(2.0))):>9} "
            f"{med(lambda p: p.published_to_first_frame_s):>9.2f}s "
            f"{med(lambda p: p.estimate_at_subscribe_kbps):>8.0f} "
            f"{med(lambda p: p.samples[0].target_kbps):>11.0f} "
            f"{med(lambda p: p.first_frame_bytes / 1000):>6.0f} "
            f"{med(lambda p: p.kbps_first(1.0)):>9.0f} {med(lambda p: p.kbps_first(2.0)):>9.0f} "
            f"{med(lambda p: p.kbps_between(4.0, 6.0)):>9.0f} {med(lambda p: p.fps_first(2.0)):>8.1f}"
        )
        print(f"{'':<28} runs, kbps 0-1 s: {[round(p.kbps_first(1.0)) for p in probes]}; "
              f"pub->frame: {[round(p.published_to_first_frame_s, 2) for p in probes]}; "
              f"target@0.1s: {[round(p.samples[0].target_kbps) for p in probes]}")  # fmt: skip
    plot(results, args.plot)


if __name__ == "__main__":
    asyncio.run(main())
