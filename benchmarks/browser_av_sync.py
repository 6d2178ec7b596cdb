"""A/V offset as a real browser plays it: headless Chromium, both modes, several runs.

An agent whose avatar uses the test-pattern face (each audio click makes the frame flash)
speaks 6 s of clicks from the signal TTS; headless Chromium (Debian's, via playwright)
subscribes to the avatar exactly as the viewer page does and timestamps, on the page's
``performance.now()`` clock:

* video: the ``expectedDisplayTime`` of each flash frame (``requestVideoFrameCallback``),
  the vsync at which the compositor shows it. Error: it is a vsync time, so frames are
  quantised to the 60 Hz begin-frame clock of headless Chrome (0-16.7 ms, uniformly, which
  shifts the median by up to ~8 ms late and widens the spread).
* audio: the output time of each click onset. The received track plays through an
  ``<audio>`` element (as in the viewer) and is also tapped by an AudioWorklet on a
  ``MediaStreamAudioSourceNode``; the click's AudioContext frame is mapped to
  ``performance.now()`` with ``AudioContext.getOutputTimestamp()`` (which includes the
  context's output latency). Error: the tap is a second path out of the WebRTC audio
  renderer; it receives the same 10 ms chunks the element plays, but through a FIFO into
  the WebAudio render thread, so it can lag the element's own output by about one render
  buffer (~10-20 ms): the measured offset may read up to that much too positive. Headless
  Chrome has no sound card (and playwright starts it with --mute-audio), so both paths end
  in a silent sink; the WebRTC audio renderer still runs at its real-time pace. The
  benchmark starts Chromium without --mute-audio: muted, it reports no audio playout
  times and then does not lip-sync at all.

Offset = click output time - (flash display time + half a frame), paired per frame slot
(``tests/av_harness.pair_offsets``), positive when the sound comes after the picture. The
page also reports the receiver's audio and video jitter-buffer delays (``getStats``): if
the browser lip-syncs the two, the video's target delay rises to the audio's.

    .venv/bin/python benchmarks/browser_av_sync.py [--runs 3] [--modes participant,in_process]

The page listens ``--settle`` seconds before the clicks: Chromium lip-syncs the avatar's
audio and video (one stream: the server's ``room.sync_streams``) only once RTCP sender
reports have arrived for both tracks.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from livekit_avatar_plugin.local_server import LocalLiveKitServer  # noqa: E402
from tests.browser.av_sync_page import BrowserAVResult, run_browser_av  # noqa: E402

TARGET = "target |median| <= 20 ms, p95 |offset| <= 40 ms"


def _median(values: list[float]) -> float:
    values = [v for v in values if v == v]  # drop NaN
    return statistics.median(values) if values else float("nan")


def summarise(mode: str, results: list[BrowserAVResult]) -> list[str]:
    all_offsets = [o for r in results for o in r.offsets_ms]
    pooled_p95 = BrowserAVResult(mode, 0, all_offsets, {}, 0.0, 0).p95_abs_ms
    return [
        f"{mode:<12} runs={len(results)}",
        "  per run: " + "; ".join(
            f"{r.median_ms:+.1f}/{r.p95_abs_ms:.1f} ms ({len(r.offsets_ms)}/{r.clicks_sent} clicks)"
            for r in results
        ),
        f"  A/V offset in Chromium, median of run medians   {_median([r.median_ms for r in results]):+.1f} ms",
        f"  p95 |offset|, median of runs / pooled           "
        f"{_median([r.p95_abs_ms for r in results]):.1f} / {pooled_p95:.1f} ms   ({TARGET})",
        f"  receiver jitter buffer, audio / video            "
        f"{_median([r.buffer_ms('audio') for r in results]):.0f} / "
        f"{_median([r.buffer_ms('video') for r in results]):.0f} ms "
        f"(targets {_median([r.buffer_ms('audio', 'target') for r in results]):.0f} / "
        f"{_median([r.buffer_ms('video', 'target') for r in results]):.0f} ms)",
        f"  presented frame rate                             "
        f"{_median([r.presented_fps for r in results]):.1f} fps",
    ]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--modes", default="participant,in_process")
    parser.add_argument("--seconds", type=float, default=6.0, help="seconds of clicks per run")
    parser.add_argument(
        "--settle", type=float, default=5.0, help="seconds the page listens before the clicks"
    )
    parser.add_argument("--video-delay-ms", type=float, default=0.0)
    args = parser.parse_args()
    lines: list[str] = []
    with LocalLiveKitServer() as info:
        for mode in args.modes.split(","):
            results = []
            for i in range(args.runs):
                result = await run_browser_av(
                    info,
                    mode=mode,
                    click_seconds=args.seconds,
                    settle_s=args.settle,
                    video_delay_ms=args.video_delay_ms,
                )
                print(f"run {i + 1}: {result.report()}", flush=True)
                results.append(result)
            lines += summarise(mode, results)
    print("\n" + "\n".join(lines))


if __name__ == "__main__":
    asyncio.run(main())
