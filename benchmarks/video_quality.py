"""Initial video quality, ``auto`` vs ``high``, as a real subscriber receives it.

For each setting the avatar (with a detailed moving test pattern) joins a fresh room; a
subscriber samples WebRTC stats every 250 ms for the first 2 s: received resolution and
bitrate. Prints the two side by side and writes docs/img/video_quality_start.png.

    .venv/bin/python benchmarks/video_quality.py [--runs 3]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from livekit_avatar_plugin import VideoOptions  # noqa: E402
from livekit_avatar_plugin.local_server import LocalLiveKitServer  # noqa: E402
from tests.quality_probe import QualityProbe, probe_quality  # noqa: E402

SETTINGS = {
    "auto (1280x720, simulcast)": dict(video=VideoOptions(quality="auto", width=1280, height=720)),
    "high (720p, 2000 kbps)": dict(video_quality="high"),
}


def plot(results: dict[str, list[QualityProbe]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4), constrained_layout=True)
    for name, probes in results.items():
        p = probes[-1]
        ts = [s.t for s in p.samples]
        ax1.plot(ts, [s.height for s in p.samples], marker="o", label=name)
        ax2.plot(ts, [s.kbps for s in p.samples], marker="o", label=name)
    ax1.set(xlabel="seconds after subscribing", ylabel="received height (px)", title="Resolution")
    ax2.set(xlabel="seconds after subscribing", ylabel="kbps", title="Received bitrate")
    ax1.legend()
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
                results[name].append(await probe_quality(info, seconds=2.0, **options))
    print(f"{'setting':<30} {'first frame':>12} {'size @1s':>10} {'size @2s':>10} {'kbps 0-1s':>10} {'kbps 0-2s':>10}")
    for name, probes in results.items():
        def med(f):
            return statistics.median(f(p) for p in probes)

        first = probes[-1].first_frame_size
        print(
            f"{name:<30} {str(first):>12} {'x'.join(map(str, probes[-1].size_at(1.0))):>10} "
            f"{'x'.join(map(str, probes[-1].size_at(2.0))):>10} "
            f"{med(lambda p: p.kbps_first(1.0)):>10.0f} {med(lambda p: p.kbps_first(2.0)):>10.0f}"
        )
    plot(results, args.plot)


if __name__ == "__main__":
    asyncio.run(main())
