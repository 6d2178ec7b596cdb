"""A/V sync benchmark against a real LiveKit server on loopback.

Runs the end-to-end scenario of ``tests/test_e2e_avsync.py`` several times per mode and
prints the medians: delivered fps, A/V offset (at the sender and at an SDK subscriber),
playback events, interruption-to-silence and first TTS byte to first synced frame.
Writes ``docs/img/av_sync_timeline.png``: what the subscriber received around the clicks.

    .venv/bin/python benchmarks/av_sync.py [--runs 3] [--modes participant,in_process]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from livekit_avatar_plugin.local_server import LocalLiveKitServer  # noqa: E402
from tests.av_harness import AVResult, run_av_scenario  # noqa: E402


def _median(values: list[float]) -> float:
    values = [v for v in values if v is not None and not np.isnan(v)]
    return statistics.median(values) if values else float("nan")


def summarise(mode: str, delay: float, results: list[AVResult]) -> list[str]:
    def med(attr: str) -> float:
        return _median([getattr(r, attr) for r in results])

    flags_ok = sum(
        [i for i, _ in r.playback_events] == [False, False, True] for r in results
    )
    return [
        f"{mode:<12} video_delay_ms={delay:<4g} runs={len(results)}",
        f"  delivered fps (25 configured)          {med('delivered_fps'):.2f}",
        f"  A/V offset at sender, median / p95|.|  {med('sender_median_offset_ms'):+.1f} / "
        f"{med('sender_p95_abs_offset_ms'):.1f} ms",
        f"  A/V offset at SDK subscriber           {med('median_offset_ms'):+.1f} / "
        f"{med('p95_abs_offset_ms'):.1f} ms",
        f"  receiver audio jitter buffer           {med('receiver_audio_buffer_ms'):.0f} ms",
        f"  playback_finished flags correct        {flags_ok}/{len(results)} runs",
        f"  interruption -> audio silent           {med('interruption_to_silence_ms'):.0f} ms",
        f"  interruption -> mouth still            {med('interruption_to_still_video_ms'):.0f} ms",
        f"  first TTS byte -> first synced frame   {med('first_tts_byte_to_first_frame_ms'):.0f} ms",
    ]


def plot_timeline(result: AVResult, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cap = result.capture
    t0 = result.marks["speech"]
    audio_t = np.concatenate(
        [arrival - t0 + np.arange(p.size) / 24000.0 for arrival, p in cap.audio]
    )
    audio_v = np.concatenate([p for _, p in cap.audio]).astype(np.float32) / 32768.0
    video_t = np.array([t - t0 for t, _ in cap.video])
    video_v = np.array([v for _, v in cap.video])
    window = (0.0, 1.6)
    fig, axes = plt.subplots(3, 1, figsize=(10, 7), constrained_layout=True)
    ax = axes[0]
    sel = (audio_t >= window[0]) & (audio_t <= window[1])
    ax.plot(audio_t[sel] * 1000, audio_v[sel], lw=0.6, color="#1f77b4")
    ax.set_ylabel("audio at subscriber")
    ax.set_title(f"What a subscriber receives ({result.mode}, clicks vs flashes)")
    ax = axes[1]
    sel = (video_t >= window[0]) & (video_t <= window[1])
    ax.step(video_t[sel] * 1000, video_v[sel], where="post", color="#d62728")
    ax.set_ylabel("video luma")
    ax.set_xlabel("ms since speech was requested")
    ax = axes[2]
    bins = np.arange(-60, 121, 5)
    ax.hist(result.sender_offsets_ms, bins=bins, alpha=0.7, label="at the sender")
    ax.hist(result.offsets_ms, bins=bins, alpha=0.7, label="at an SDK subscriber (no A/V sync)")
    ax.axvspan(-45, 125, color="green", alpha=0.06, label="ITU-R BT.1359 undetectable")
    ax.set_xlabel("audio - video offset per click (ms)")
    ax.legend(loc="upper left", fontsize=8)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    print(f"wrote {path}")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--modes", default="participant,in_process")
    parser.add_argument("--video-delay-ms", default="0,75", help="comma list to compare")
    parser.add_argument(
        "--quality", default="auto", help="auto (simulcast) or a pinned one-layer preset"
    )
    parser.add_argument(
        "--plot",
        default=str(ROOT / "docs/img/av_sync_timeline.png"),
        help="where to write the timeline picture; empty for none",
    )
    args = parser.parse_args()
    lines: list[str] = []
    plotted = False
    with LocalLiveKitServer() as info:
        for mode in args.modes.split(","):
            for delay in [float(d) for d in args.video_delay_ms.split(",")]:
                results = []
                for i in range(args.runs):
                    print(f"{mode} video_delay_ms={delay:g} run {i + 1}/{args.runs}...", flush=True)
                    results.append(
                        await run_av_scenario(
                            info, mode=mode, video_delay_ms=delay, quality=args.quality
                        )
                    )
                lines += summarise(mode, delay, results)
                if not plotted and args.plot:
                    plot_timeline(results[-1], Path(args.plot))
                    plotted = True
    print("\n".join(lines))


if __name__ == "__main__":
    asyncio.run(main())
