"""Initial video quality, ``auto`` vs ``high``, as a real subscriber receives it.

A viewer waits in a fresh room; the agent and its avatar (with a detailed moving test
pattern, so the encoder has use for every bit) join it. From the viewer's first decoded
frame of the avatar, every 100 ms for 6 s: the received resolution and bitrate, and on
the avatar's side WebRTC's bandwidth estimate and the target WebRTC sets its encoder
(``rtc tgt``; the plugin's own VP8 encoder keeps the cap while that is >= 75 % of it).
``cores``: this process's CPU over the probe (the avatar and the viewer's decoding). Prints
medians over the runs side by side and writes docs/img/video_quality_start.png.

``high`` is VP8 encoded by the plugin (see livekit_avatar_plugin/_vp8_encoder.py);
``high, WebRTC's VP8`` is the same track encoded by WebRTC, as before: its first two
seconds ramp (it gives the encoder ~5/6 of the cap at first, and its rate control pays
for the key frame out of the next second's frames). ``high, vp9`` is WebRTC's VP9, which
does not ramp. ``high, not held back`` lets viewers in as soon as the track is published
instead of once WebRTC's bandwidth estimate covers the cap.

    .venv/bin/python benchmarks/video_quality.py [--runs 3]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import resource
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from livekit_avatar_plugin import VideoOptions, participant  # noqa: E402
from livekit_avatar_plugin.local_server import LocalLiveKitServer  # noqa: E402
from tests.quality_probe import QualityProbe, probe_quality  # noqa: E402

SETTINGS = {
    "auto (1280x720, simulcast)": (dict(video=VideoOptions(quality="auto", width=1280, height=720)), {}),
    "high (720p, 2000 kbps)": (dict(video_quality="high"), {}),
    "high, WebRTC's VP8": (dict(video_quality="high"), {"_ENCODE_VP8_HERE": False}),
    "high, vp9": (dict(video=VideoOptions(quality="high", codec="vp9")), {}),
    "high, not held back": (dict(video_quality="high"), {"_BANDWIDTH_WAIT_MAX_S": 0.0}),
}  # fmt: skip
PLOTTED = list(SETTINGS)[:4]


def cpu_seconds() -> float:
    """This process's CPU time: the avatar's encoding and the viewer's decoding, both."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@contextlib.contextmanager
def patched(settings: dict):
    saved = {name: getattr(participant, name) for name in settings}
    for name, value in settings.items():
        setattr(participant, name, value)
    try:
        yield
    finally:
        for name, value in saved.items():
            setattr(participant, name, value)


def plot(results: dict[str, list[QualityProbe]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.2), constrained_layout=True)
    for name, colour in zip(PLOTTED, ["tab:blue", "tab:orange", "tab:red", "tab:green"]):
        probes = results[name]
        p = probes[len(probes) // 2]
        ts = [s.t for s in p.samples]
        ax1.step([0.0, *ts], [p.first_frame_size[1], *[s.height for s in p.samples]],
                 where="post", color=colour, label=name)  # fmt: skip
        windowed = [t for t in ts if t >= 0.5]
        ax2.plot(windowed, [p.kbps_between(t - 0.5, t) for t in windowed], color=colour,
                 label=name)  # fmt: skip
    ax1.set(xlabel="seconds after the viewer's first frame", ylabel="received height (px)",
            title="Resolution", ylim=(0, 780))  # fmt: skip
    ax2.set(xlabel="seconds after the viewer's first frame", ylabel="kbps",
            title="Received bitrate (over the last 0.5 s, key frame included)")  # fmt: skip
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
    cores: dict[str, list[float]] = {name: [] for name in SETTINGS}
    with LocalLiveKitServer() as info:
        for _ in range(args.runs):
            for name, (options, patches) in SETTINGS.items():
                with patched(patches):
                    cpu0, t0 = cpu_seconds(), time.monotonic()
                    results[name].append(await probe_quality(info, seconds=6.0, **options))
                    cores[name].append((cpu_seconds() - cpu0) / (time.monotonic() - t0))
    print(
        f"{'setting':<28} {'first frame':>11} {'@1s':>9} {'@2s':>9} {'pub->frame':>10} "
        f"{'est@sub':>8} {'rtc tgt':>7} {'key kB':>6} {'kbps 0-1s':>9} {'kbps 0-2s':>9} "
        f"{'kbps 4-6s':>9} {'fps 0-2s':>8} {'cores':>5}"
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
            f"{med(lambda p: p.samples[0].target_kbps):>7.0f} "
            f"{med(lambda p: p.first_frame_bytes / 1000):>6.0f} "
            f"{med(lambda p: p.kbps_first(1.0)):>9.0f} {med(lambda p: p.kbps_first(2.0)):>9.0f} "
            f"{med(lambda p: p.kbps_between(4.0, 6.0)):>9.0f} {med(lambda p: p.fps_first(2.0)):>8.1f} "
            f"{statistics.median(cores[name]):>5.2f}"
        )
        print(f"{'':<28} runs, kbps 0-1 s: {[round(p.kbps_first(1.0)) for p in probes]}; "
              f"pub->frame: {[round(p.published_to_first_frame_s, 2) for p in probes]}; "
              f"rtc tgt: {[round(p.samples[0].target_kbps) for p in probes]}")  # fmt: skip
    plot(results, args.plot)


if __name__ == "__main__":
    asyncio.run(main())
