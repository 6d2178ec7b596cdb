"""A test-pattern face pipeline: the frame flashes white at each audio click.

Test instrumentation for measuring A/V offset end to end; it is never shipped. It plugs
into the product's generator through the same ``FacePipeline`` seam as the real face, so
the measurement covers the product's own timing code.

Frame colours (luma): idle/listening ~ 16, speaking ~ 96, click ~ 235.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from livekit_avatar_plugin._state import ConversationState

IDLE_LEVEL = 16
SPEAKING_LEVEL = 96
FLASH_LEVEL = 235


class ClickMotion:
    """A 'mouth model' whose one channel is 1 within +-20 ms of a click, else 0."""

    channels = ("jaw_open",)
    fps = 100.0
    lookahead_s = 0.02
    _THRESHOLD = 0.3

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self._rate: int | None = None
        self._pending = np.zeros(0, dtype=np.float32)
        self._loud: list[bool] = []  # one flag per 10 ms window
        self._emitted = 0

    def push(self, pcm: np.ndarray, sample_rate: int) -> np.ndarray:
        self._rate = sample_rate
        window = sample_rate // 100
        data = np.concatenate([self._pending, pcm.astype(np.float32) / 32768.0])
        n = data.size // window
        for i in range(n):
            self._loud.append(bool(np.abs(data[i * window : (i + 1) * window]).max() > self._THRESHOLD))
        self._pending = data[n * window :]
        # Frame j needs the windows up to j + 2 (20 ms lookahead) to be known.
        return self._emit(len(self._loud) - 2)

    def flush(self) -> np.ndarray:
        if self._pending.size:
            self._loud.append(bool(np.abs(self._pending).max() > self._THRESHOLD))
            self._pending = np.zeros(0, dtype=np.float32)
        return self._emit(len(self._loud))

    def _emit(self, upto: int) -> np.ndarray:
        out = []
        for j in range(self._emitted, max(self._emitted, upto)):
            lo, hi = max(0, j - 2), min(len(self._loud), j + 3)
            out.append([1.0 if any(self._loud[lo:hi]) else 0.0])
        self._emitted = max(self._emitted, upto)
        return np.asarray(out, dtype=np.float32).reshape(-1, 1)


class FlashRenderer:
    def __init__(self, width: int, height: int) -> None:
        self._frame = np.empty((height, width, 3), dtype=np.uint8)

    def render(
        self,
        mouth: Mapping[str, float],
        state: ConversationState,
        t: float,
        energy: float = 0.0,
    ) -> np.ndarray:
        if mouth.get("jaw_open", 0.0) > 0.5:
            level = FLASH_LEVEL
        elif state == ConversationState.SPEAKING:
            level = SPEAKING_LEVEL
        else:
            level = IDLE_LEVEL
        self._frame.fill(level)
        return self._frame


class TestPatternPipeline:
    __test__ = False  # not a pytest class

    def create_motion(self) -> ClickMotion:
        return ClickMotion()

    def create_renderer(self, width: int, height: int) -> FlashRenderer:
        return FlashRenderer(width, height)


class TexturedRenderer:
    """Moving, detailed frames, so encoders spend real bits (for quality measurements).

    Blotches a few pixels across, not per-pixel noise: noise cannot be coded at any
    sensible bitrate, so the encoder drops most frames (2-3 fps at 720p and 2 Mbps) and
    the measurement would be of its frame dropper, not of the bitrate it was given.
    """

    def __init__(self, width: int, height: int) -> None:
        from PIL import Image

        rng = np.random.default_rng(3)
        coarse = rng.integers(0, 256, (height // 6, width * 2 // 6, 3), dtype=np.uint8)
        self._base = np.asarray(
            Image.fromarray(coarse).resize((width * 2, height), Image.Resampling.BICUBIC)
        )
        self._w = width

    def render(self, mouth, state, t, energy=0.0):
        shift = int(t * 40) % self._w
        return np.ascontiguousarray(self._base[:, shift : shift + self._w])


class TexturedPipeline(TestPatternPipeline):
    def create_renderer(self, width: int, height: int) -> TexturedRenderer:
        return TexturedRenderer(width, height)


class NeverReadyPipeline(TestPatternPipeline):
    """A worker that takes a job, joins, and never gets a face up (as when a worker's
    room connection hangs on a saturated machine): the agent must ask for another."""

    def create_renderer(self, width: int, height: int) -> FlashRenderer:
        import time

        time.sleep(3600)
        raise AssertionError("unreachable")


def first_process_only() -> TestPatternPipeline:
    """The test pattern in the first process that asks for it; every later process fails
    to start (a worker generation whose successor cannot come up). The processes count
    in the file named by ``AVATAR_TEST_PROCESS_COUNT``."""
    import os
    from pathlib import Path

    counter = Path(os.environ["AVATAR_TEST_PROCESS_COUNT"])
    count = int(counter.read_text() or 0) + 1 if counter.exists() else 1
    counter.write_text(str(count))
    if count > 1:
        raise RuntimeError(f"process {count}: this pipeline starts only once")
    return TestPatternPipeline()
