"""Debian's Chromium under playwright, set up for WebRTC pages (test instrumentation).

Never downloads a browser: it launches ``/usr/lib/chromium/chromium`` (the binary behind
Debian's ``/usr/bin/chromium`` wrapper) and fails with the package to install if it is not
there. Fake camera/microphone and no autoplay gesture, so pages can play and publish media
headless.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

from playwright.async_api import Browser, Page, async_playwright

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("TEST_ARTIFACTS", ROOT / "test-artifacts"))

FLAGS = [
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
    "--autoplay-policy=no-user-gesture-required",
    # The local LiveKit server offers only 127.0.0.1 candidates.
    "--allow-loopback-in-peer-connection",
    "--no-sandbox",  # root in a container has no user namespace to sandbox with
    "--disable-dev-shm-usage",
    "--no-first-run",
]


def chromium_path() -> str:
    for candidate in (os.environ.get("CHROMIUM"), "/usr/lib/chromium/chromium", shutil.which("chromium")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise RuntimeError(
        "no Chromium found: install Debian's `chromium` package (scripts/apt/browser.txt, "
        "installed by scripts/setup.sh) or set CHROMIUM to its binary"
    )


@contextlib.asynccontextmanager
async def chromium(*extra_flags: str, audible: bool = False) -> AsyncIterator[Browser]:
    """``audible``: leave out playwright's --mute-audio. A muted Chromium never reports
    audio playout times, and without them it does not lip-sync audio to video."""
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(
            executable_path=chromium_path(),
            headless=True,
            args=[*FLAGS, *extra_flags],
            ignore_default_args=["--mute-audio"] if audible else None,
        )
        try:
            yield browser
        finally:
            await browser.close()


def collect_console(page: Page) -> list[str]:
    """The page's console and errors, to print when a test fails."""
    lines: list[str] = []
    page.on("console", lambda m: lines.append(f"console.{m.type}: {m.text}"))
    page.on("pageerror", lambda e: lines.append(f"pageerror: {e}"))
    return lines


def artifact_path(name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS / name
