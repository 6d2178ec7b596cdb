"""The viewer page in real headless Chromium, against the real demo (server, agent, avatar).

It connects; the avatar's video plays at >= 20 fps; the picture is a face (not black, not
frozen); after a typed message the mouth region moves while the agent's audio plays and
rests after. Screenshots go to test-artifacts/ (printed), one per step and screen size.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from .browser.chromium import artifact_path, chromium, collect_console
from .browser.demo_process import DemoProcess
from .test_default_face_e2e import mouth_box

pytestmark = pytest.mark.livekit_server

PROBE = (Path(__file__).parent / "browser" / "viewer_probe.js").read_text()
LAPTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}


@pytest.fixture(scope="module")
def demo():
    demo = DemoProcess(
        [sys.executable, "-m", "livekit_avatar_plugin.cli", "demo", "--port", "0", "--viewer-port", "0"]
    )
    try:
        demo.wait_url(180)
        yield demo
    finally:
        demo.interrupt()
        demo.kill_survivors()


async def _frame_rates(page, seconds: float) -> tuple[float, float, str]:
    last = "() => window.__probe.samples.at(-1).presented"
    presented0, stats0 = await page.evaluate(last), await _video_stats(page)
    await asyncio.sleep(seconds)
    presented1, stats1 = await page.evaluate(last), await _video_stats(page)
    elapsed = (stats1["t"] - stats0["t"]) / 1000
    return (
        (presented1 - presented0) / elapsed,
        (stats1["decoded"] - stats0["decoded"]) / elapsed,
        f"{stats1['w']}x{stats1['h']}",
    )


def _mouth_fractions() -> list[float]:
    ys, xs = mouth_box(512)
    return [ys.start / 512, ys.stop / 512, xs.start / 512, xs.stop / 512]


async def _open(browser, url: str, viewport: dict):
    page = await browser.new_page(viewport=viewport)
    console = collect_console(page)
    await page.goto(url)
    try:
        await page.wait_for_selector('#conn[data-state="connected"]', timeout=30_000)
        await page.wait_for_function(
            "() => document.querySelector('#avatar-video').videoWidth > 0", timeout=60_000
        )
    except Exception:
        print("\n".join(console[-30:]))
        raise
    return page, console


async def _video_stats(page) -> dict:
    return await page.evaluate(
        """async () => {
            const video = [...window.viewer.room.remoteParticipants.values()]
                .flatMap((p) => [...p.videoTrackPublications.values()])
                .find((pub) => pub.track);
            const stats = await video.track.getRTCStatsReport();
            for (const s of stats.values())
                if (s.type === 'inbound-rtp' && s.kind === 'video')
                    return {decoded: s.framesDecoded, dropped: s.framesDropped ?? 0,
                            w: s.frameWidth, h: s.frameHeight, t: performance.now()};
            return null;
        }"""
    )


async def test_viewer_plays_the_avatar_and_the_mouth_follows_the_agents_speech(demo):
    demo_url = demo.url
    async with chromium() as browser:
        page, console = await _open(browser, demo_url, LAPTOP)
        await page.evaluate(PROBE, _mouth_fractions())

        # Frame rate: frames presented on screen (requestVideoFrameCallback) and decoded
        # (WebRTC stats) over 3 s windows, once the full-size simulcast layer arrives
        # ("auto" starts low and climbs). The machine is shared, so a window that another
        # job's CPU burst spoiled is measured again, up to 4 windows.
        await page.wait_for_function(
            "() => document.querySelector('#avatar-video').videoWidth >= 512", timeout=30_000
        )
        await page.wait_for_function(
            "() => window.__probe.error || window.__probe.samples.length > 10", timeout=30_000
        )
        assert not await page.evaluate("() => window.__probe.error")
        windows = []
        for _ in range(4):
            presented_fps, decoded_fps, size = await _frame_rates(page, 3.0)
            windows.append(f"{presented_fps:.1f}/{decoded_fps:.1f}")
            if presented_fps >= 20.0 and decoded_fps >= 20.0:
                break
        print(
            f"\nvideo {size}: presented/decoded fps per window {windows} "
            f"(load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)"
        )
        sender = [line for line in demo.lines if "delivered_fps" in line][-1:]
        assert presented_fps >= 20.0 and decoded_fps >= 20.0, (windows, sender)

        # A face: bright enough, with contrast, and the stream keeps moving (not frozen).
        shot = artifact_path("viewer-laptop-idle.png")
        await page.screenshot(path=str(shot))
        box = await page.locator("#avatar-video").bounding_box()
        assert box and box["width"] > 300
        pixels = np.asarray(Image.open(shot).convert("L"), dtype=np.float32)
        video_px = pixels[
            int(box["y"]) : int(box["y"] + box["height"]), int(box["x"]) : int(box["x"] + box["width"])
        ]
        print(f"screenshot {shot}: video mean {video_px.mean():.0f}, std {video_px.std():.0f}")
        assert 40 < video_px.mean() < 230 and video_px.std() > 25, "the video looks blank"
        samples = await page.evaluate("() => window.__probe.samples")
        assert samples[-1]["presented"] > samples[0]["presented"] + 50, "video is frozen"
        assert all(s["std"] > 20 for s in samples[-50:]), "blank frames in the stream"

        # Speech: type a message; the agent answers aloud and the mouth moves with it.
        n0 = len(samples)
        await page.fill("#chat-input", "Hello there! Tell me something about the weather today.")
        await page.click("#chat-send")
        # Generous: on a shared 2-core machine the reply can queue behind other work.
        await page.wait_for_function(
            "() => [...document.querySelectorAll('#transcript .msg.agent')]"
            ".some((m) => m.textContent.toLowerCase().includes('hello there'))",
            timeout=90_000,
        )
        spoke = shot_taken = False
        for _ in range(60):  # the reply, then 2 s of quiet after it
            await asyncio.sleep(0.5)
            recent = await page.evaluate(f"() => window.__probe.samples.slice({n0})")
            loud = [i for i, s in enumerate(recent) if s["rms"] > 0.01]
            if not loud:
                continue
            spoke = True
            if not shot_taken and len(recent) - loud[-1] < 3:
                shot_taken = True
                await page.screenshot(path=str(artifact_path("viewer-laptop-speaking.png")))
            if recent[-1]["t"] - recent[loud[-1]]["t"] > 2000:
                break
        assert spoke, "no agent audio reached the page:\n" + "\n".join(console[-20:])
        await page.screenshot(path=str(artifact_path("viewer-laptop-after.png")))
        transcript = await page.locator("#transcript").inner_text()
        assert "weather" in transcript.lower(), transcript

        all_samples = await page.evaluate("() => window.__probe.samples")
        artifact_path("viewer-samples.json").write_text(json.dumps(all_samples))
        speaking, resting = _mouth_motion(recent)
        print(f"mouth motion per frame: while audio plays {speaking:.2f}, after {resting:.2f}")
        assert speaking > 1.0
        assert speaking > 3 * resting

        # The same page on a phone-sized window.
        phone, _ = await _open(browser, demo_url, PHONE)
        await phone.wait_for_selector("#transcript .msg.agent", timeout=90_000)  # the greeting
        await phone.fill("#chat-input", "What a nice day!")
        await phone.click("#chat-send")
        await phone.wait_for_function(
            "() => document.querySelectorAll('#transcript .msg.agent').length >= 2", timeout=90_000
        )
        await asyncio.sleep(1.0)
        await phone.screenshot(path=str(artifact_path("viewer-phone.png")))
        vbox = await phone.locator("#avatar-video").bounding_box()
        input_box = await phone.locator("#chat-input").bounding_box()
        assert vbox and input_box
        assert vbox["x"] >= 0 and vbox["x"] + vbox["width"] <= PHONE["width"]
        assert input_box["y"] + input_box["height"] <= PHONE["height"], "chat input off screen"
        print(f"screenshots in {artifact_path('').resolve()}")


def _mouth_motion(samples: list[dict]) -> tuple[float, float]:
    """Mean mouth change per frame while the audio is loud, and 0.5-2 s after it ended.

    A frame counts as speaking when the audio was loud within 150 ms of it: the pauses
    between words and sentences, where the mouth rightly rests, count for neither.
    """
    loud_t = [s["t"] for s in samples if s["rms"] > 0.01]
    end = loud_t[-1]
    during = [
        s["diff"]
        for s in samples
        if s["diff"] >= 0 and s["t"] <= end and min(abs(s["t"] - t) for t in loud_t) <= 150
    ]
    after = [s["diff"] for s in samples if end + 500 <= s["t"] <= end + 2000 and s["diff"] >= 0]
    assert len(during) > 10 and len(after) > 10, (len(during), len(after))
    return statistics.mean(during), statistics.mean(after)
