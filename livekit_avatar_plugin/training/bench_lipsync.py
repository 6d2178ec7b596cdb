"""Speed of the lip-sync runtime on one CPU core.

    python -m livekit_avatar_plugin.training.bench_lipsync [--seconds 30] [--repeat 5]

onnxruntime runs with intra_op_num_threads=1 on the CPU provider. Prints ms of
compute per second of audio (median of ``--repeat`` runs) for offline ``infer`` at
several input rates and for streaming with 100 ms chunks (LiveKit's data-stream
frames) and 10-20 ms chunks (real-time audio frames).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np


def _median(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--model", default=None)
    args = ap.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from .._audio.lipsync import LipSyncModel

    model = LipSyncModel.load(args.model, providers=["CPUExecutionProvider"], intra_op_threads=1)
    size = os.path.getsize(model.path) / 1e6
    print(f"model {model.path.name}: {size:.2f} MB, {len(model.channels)} channels, {model.fps:g} fps, lookahead {model.lookahead_s * 1000:.1f} ms, provider {model.provider}, 1 thread")
    rng = np.random.default_rng(0)
    dur = args.seconds
    for sr in (16000, 8000, 24000, 48000):
        x = (rng.standard_normal(int(sr * dur)) * 3000).astype(np.int16)
        model.infer(x[: sr // 2], sr)  # warm the resampler table
        t = _median(lambda: model.infer(x, sr), args.repeat)
        print(f"offline  {sr:5d} Hz int16: {t / dur * 1000:6.2f} ms per second of audio")
    for sr, chunk_ms in ((24000, 100), (48000, 20), (16000, 20), (48000, 10), (16000, 10)):
        x = (rng.standard_normal(int(sr * dur)) * 3000).astype(np.int16)
        step = sr * chunk_ms // 1000

        def run():
            s = model.stream()
            for i in range(0, len(x), step):
                s.push(x[i : i + step], sr)
            s.flush()

        t = _median(run, args.repeat)
        print(f"stream   {sr:5d} Hz, {chunk_ms:3d} ms chunks: {t / dur * 1000:6.2f} ms per second of audio")
    return 0


if __name__ == "__main__":
    sys.exit(main())
