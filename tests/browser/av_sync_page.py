"""A/V offset as a browser plays it (test instrumentation; see benchmarks/browser_av_sync.py).

An agent with the test-pattern face (``tests/pattern_pipeline.py``: the frame flashes at
each audio click) speaks ``clicks N`` from the signal TTS (``tests/fakes.py``). Headless
Chromium opens ``tests/browser/avsync/`` (a probe page bundled here with esbuild from the
viewer's own ``livekit-client``), served with tokens by the product's ``ViewerServer``, and
timestamps on one clock (``performance.now()``):

* each flash: the ``expectedDisplayTime`` of the first bright frame, from
  ``requestVideoFrameCallback``: the vsync at which the compositor shows it;
* each click: its output time, from an AudioWorklet tap on the received track (which also
  plays through an ``<audio>`` element, as in the viewer), mapped from the AudioContext's
  frame clock with ``getOutputTimestamp()``.

Offsets are audio minus video, pairing each click with the flash of its frame slot,
exactly as ``tests/av_harness.py`` does for the SDK subscriber. The receiver's audio and
video jitter-buffer delays (``getStats``) are reported too: with A/V sync at work, the
video's target delay rises to the audio's.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import statistics
import subprocess
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from livekit_avatar_plugin import VideoOptions
from livekit_avatar_plugin.local_server import ServerInfo
from livekit_avatar_plugin.viewer.server import ViewerServer

from ..av_harness import FLASH_THRESHOLD, pair_offsets, percentile
from ..fakes import VIDEO_FPS, click_times
from ..rooms import agent_with_avatar, shut_down
from .chromium import ROOT, chromium, collect_console

PROBE_DIR = Path(__file__).resolve().parent / "avsync"


def build_probe(out: Path) -> Path:
    """Bundle the probe page with the viewer's livekit-client (web/node_modules)."""
    modules = ROOT / "web" / "node_modules"
    esbuild = modules / ".bin" / "esbuild"
    if not esbuild.exists():
        raise RuntimeError(f"{esbuild} is missing: run scripts/setup.sh (npm ci in web/)")
    subprocess.run(
        [str(esbuild), str(PROBE_DIR / "probe.ts"), "--bundle", "--format=esm",
         f"--outfile={out / 'probe.js'}", "--log-level=warning"],
        check=True,
        env={**os.environ, "NODE_PATH": str(modules)},
    )
    for name in ("index.html", "click-tap.worklet.js"):
        shutil.copy(PROBE_DIR / name, out / name)
    # ViewerServer serves any bundle with index.html + viewer.js; the probe's is probe.js.
    (out / "viewer.js").write_text("")
    return out


@dataclass
class BrowserAVResult:
    mode: str
    clicks_sent: int
    offsets_ms: list[float]
    buffers: dict
    presented_fps: float
    frame_width: int
    console: list[str] = field(default_factory=list, repr=False)

    @property
    def median_ms(self) -> float:
        return statistics.median(self.offsets_ms) if self.offsets_ms else float("nan")

    @property
    def p95_abs_ms(self) -> float:
        return percentile([abs(o) for o in self.offsets_ms], 95)

    def buffer_ms(self, kind: str, what: str = "delay") -> float:
        entry = self.buffers.get(kind) or {}
        return float(entry.get(what, float("nan")))

    def report(self) -> str:
        return (
            f"{self.mode:<12} clicks {len(self.offsets_ms)}/{self.clicks_sent}  "
            f"offset median {self.median_ms:+.1f} ms, p95 |offset| {self.p95_abs_ms:.1f} ms  "
            f"jitter buffer audio {self.buffer_ms('audio'):.0f} ms (target "
            f"{self.buffer_ms('audio', 'target'):.0f}), video {self.buffer_ms('video'):.0f} ms "
            f"(target {self.buffer_ms('video', 'target'):.0f})  "
            f"presented {self.presented_fps:.1f} fps at {self.frame_width} px"
        )


def _flash_onsets(frames: list[dict], after: float) -> list[float]:
    onsets, previous = [], False
    for f in frames:
        bright = f["luma"] > FLASH_THRESHOLD
        if bright and not previous and f["t"] >= after:
            onsets.append(f["t"] / 1000)
        previous = bright
    return onsets


async def run_browser_av(
    info: ServerInfo,
    *,
    mode: str = "participant",
    click_seconds: float = 6.0,
    settle_s: float = 5.0,
    video_delay_ms: float = 0.0,
) -> BrowserAVResult:
    """``settle_s``: listen this long before the clicks; Chromium starts lip-syncing once
    it has RTCP sender reports for both tracks (audio's come every few seconds)."""
    room_name = f"browser-av-{uuid.uuid4().hex[:8]}"
    agent_room, session, avatar = await agent_with_avatar(
        info,
        room_name,
        replies=(f"clicks {click_seconds}",),
        mode=mode,
        video=VideoOptions(width=512, height=512, fps=VIDEO_FPS),
        video_delay_ms=video_delay_ms,
    )
    try:
        with tempfile.TemporaryDirectory(prefix="avsync-probe-") as tmp:
            async with ViewerServer(info, static_dir=build_probe(Path(tmp))) as server:
                async with chromium(audible=True) as browser:
                    page = await browser.new_page()
                    console = collect_console(page)
                    await page.goto(f"{server.url}?room={room_name}")
                    await page.wait_for_function(
                        "() => window.probe && (window.probe.error || (window.probe.video && window.probe.audio"
                        " && window.probe.frames.length > 50))",
                        timeout=60_000,
                    )
                    error = await page.evaluate("() => window.probe.error")
                    if error:
                        raise RuntimeError(f"probe page failed: {error}\n" + "\n".join(console))
                    await asyncio.sleep(settle_s)
                    t0 = await page.evaluate("() => performance.now()")
                    await session.say(f"clicks {click_seconds}").wait_for_playout()
                    await asyncio.sleep(1.0)
                    probe = await page.evaluate(
                        f"() => ({{frames: window.probe.frames.filter(f => f.t >= {t0}),"
                        f" clicks: window.probe.clicks.filter(t => t >= {t0}),"
                        " buffers: window.probe.buffers})"
                    )
    finally:
        await shut_down(session, avatar, agent_room)

    frames = probe["frames"]
    flashes = _flash_onsets(frames, t0)
    clicks = [t / 1000 for t in probe["clicks"]]
    offsets = [o * 1000 for o in pair_offsets(clicks, flashes, fps=VIDEO_FPS)]
    span = (frames[-1]["t"] - frames[0]["t"]) / 1000 if len(frames) > 1 else 0
    return BrowserAVResult(
        mode=mode,
        clicks_sent=len(click_times(click_seconds)),
        offsets_ms=offsets,
        buffers=probe["buffers"],
        presented_fps=(len(frames) - 1) / span if span else 0.0,
        frame_width=max((f["w"] for f in frames), default=0),
        console=console,
    )
