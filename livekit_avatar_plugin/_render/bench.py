"""Benchmark body (run by ``livekit-avatar bench`` in a one-thread interpreter)."""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np


def _pin_one_core() -> str:
    try:
        cpu = sorted(os.sched_getaffinity(0))[0]
        os.sched_setaffinity(0, {cpu})
        return f"pinned to CPU {cpu}"
    except (AttributeError, OSError):
        return "not pinned"


def bench_render(avatar: str, width: int, height: int, frames: int, background: str = "keep") -> tuple[float, float, float]:
    """Mean and p95 ms per frame, and the background's mean share of it (ms)."""
    from livekit_avatar_plugin._pipeline import load_pipeline
    from livekit_avatar_plugin._state import ConversationState

    # every renderer the pipeline makes draws RGBA too, beyond the FrameRenderer protocol
    r: Any = load_pipeline(avatar).create_renderer(width, height, background=background)
    draw = r.render_rgba  # what a live session calls
    look_ahead = getattr(r, "look_ahead", None)
    channels = ("jaw_open", "lips_closed", "lip_round", "lip_spread", "labiodental")
    fps = 25.0

    def mouth(i: int) -> np.ndarray:
        t = i / fps
        return np.array([0.5 + 0.5 * np.sin(t * 9.0), float((i // 7) % 5 == 0), 0.5 + 0.5 * np.sin(t * 3.0),
                         0.5 + 0.5 * np.cos(t * 3.0), float((i // 11) % 7 == 0)], np.float32)

    times, compose = [], []
    for i in range(frames + 20):
        m = dict(zip(channels, mouth(i).tolist()))
        t0 = time.perf_counter()
        if look_ahead is not None:  # as the generator offers it
            look_ahead(channels, np.stack([mouth(i + 1), mouth(i + 2)]))
        draw(m, ConversationState.SPEAKING, i / fps, 0.6)
        if i >= 20:
            times.append(time.perf_counter() - t0)
            compose.append(getattr(r, "compose_s", 0.0))
    a = np.array(times) * 1000
    return float(a.mean()), float(np.percentile(a, 95)), float(np.mean(compose) * 1000)


def bench_load(avatar: str) -> float:
    """Seconds to read and check the avatar's package (a fresh read, not the process cache)."""
    from pathlib import Path

    from livekit_avatar_plugin._face.avatar import load_package

    path = Path(avatar)
    t0 = time.perf_counter()
    load_package(path)
    return time.perf_counter() - t0


def bench_create() -> float:
    import skimage.data
    from PIL import Image

    from livekit_avatar_plugin._face.avatar import create_avatar

    img = Image.fromarray(skimage.data.astronaut()).resize((3000, 3000), Image.Resampling.BICUBIC)
    canvas = Image.new("RGB", (4000, 3000), tuple(int(v) for v in np.asarray(img)[5, 5]))
    canvas.paste(img, (500, 0))
    with tempfile.TemporaryDirectory() as td:
        photo = Path(td) / "photo12mp.jpg"
        canvas.save(photo, quality=92)
        create_avatar(photo, Path(td) / "warm")  # load models, warm caches
        t0 = time.perf_counter()
        create_avatar(photo, Path(td) / "avatar")
        return time.perf_counter() - t0


def main(argv: list[str]) -> int:
    frames = int(argv[0]) if argv and argv[0].isdigit() else 500
    avatar = argv[argv.index("--avatar") + 1] if "--avatar" in argv else "default"
    print(f"one core ({_pin_one_core()}), OMP/BLAS threads = {os.environ.get('OMP_NUM_THREADS')}, "
          f"onnxruntime intra-op threads = 1; video encoding excluded; avatar {avatar}")
    if avatar != "default":
        print(f"load the package: {bench_load(avatar):.3f} s (target <= 1 s)")
    for w, h, target in ((512, 512, 4.0), (1280, 720, 8.0)):
        mean, p95, _ = bench_render(avatar, w, h, frames)
        print(f"render {w}x{h}: {mean:.2f} ms/frame mean, {p95:.2f} ms p95 over {frames} frames (target <= {target:g} ms)")
    background = argv[argv.index("--background") + 1] if "--background" in argv else "#00b140"
    if background != "keep":
        for w, h in ((512, 512), (1280, 720)):
            mean, p95, compose_ms = bench_render(avatar, w, h, frames, background)
            print(f"render {w}x{h} over background {background}: {mean:.2f} ms/frame mean, {p95:.2f} ms p95; "
                  f"the background's own share {compose_ms:.2f} ms/frame"
                  + (" (target <= 1 ms)" if (w, h) == (512, 512) else ""))
    if "--skip-create" not in argv:
        try:
            dt = bench_create()
            print(f"create from a 12 MP photo (4000x3000 JPEG): {dt:.2f} s (target <= 3 s)")
        except ImportError:
            print("create: skipped (needs scikit-image for the test photo)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
