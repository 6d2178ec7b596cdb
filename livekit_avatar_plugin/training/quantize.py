"""Quantise a trained lip-sync ONNX model to int8 (static, per-channel weights) and check it.

    python -m livekit_avatar_plugin.training.quantize FLOAT.onnx OUT.onnx [--data artifacts/lipsync]

A streaming call runs the network on one or two frames, so its cost is reading the
weights, not arithmetic: int8 weights are a quarter of the bytes and fit a core's cache.
Activation ranges are calibrated on the training families' *validation* speech, fed in
the runtime's own 2-frame steps (held-out families are never touched). The result is
checked against the float model on other validation utterances, and streaming against
offline, before it is written.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from .._audio.lipsync import CALL_FRAMES
from . import data as D
from .gen_data import LOOKAHEAD_FRAMES, load_eval


def calibration_feeds(model, utts, rng: np.random.Generator, every: int) -> list[dict[str, np.ndarray]]:
    """Inputs of the runtime's streaming calls over ``utts``: one call in ``every``, states included."""
    feeds = []
    for u in utts:
        feats = D.features_for(u.audio, u.sr, LOOKAHEAD_FRAMES)
        states = [s.copy() for s in model._warm_states]
        for i in range(0, len(feats), CALL_FRAMES):
            step = feats[i : i + CALL_FRAMES]
            if rng.integers(every) == 0:
                feeds.append(model._feeds(step, states))
            _, states = model._run(step, states)
    return feeds


def compare(float_model, int8_model, utts) -> dict[str, float]:
    """Largest and mean absolute difference of the mouth channels, and streaming vs offline."""
    diffs, stream_err = [], 0.0
    for u in utts:
        a, b = float_model.infer(u.audio, u.sr), int8_model.infer(u.audio, u.sr)
        diffs.append(np.abs(a - b))
        s = int8_model.stream()
        step = u.sr // 100
        parts = [s.push(u.audio[i : i + step], u.sr) for i in range(0, len(u.audio), step)] + [s.flush()]
        stream_err = max(stream_err, float(np.abs(np.concatenate(parts) - b).max()))
    d = np.concatenate(diffs)
    return {"max_abs": float(d.max()), "mean_abs": float(d.mean()), "stream_vs_offline": stream_err}


def main(argv: list[str] | None = None) -> int:
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from .._audio.lipsync import LipSyncModel

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", type=Path, help="the float ONNX model")
    ap.add_argument("out", type=Path)
    ap.add_argument("--data", type=Path, default=D.cache_dir())
    ap.add_argument("--calibration", type=int, default=30, help="validation utterances that set the activation ranges")
    ap.add_argument("--check", type=int, default=30, help="other validation utterances the result is checked on")
    ap.add_argument("--every", type=int, default=20, help="keep one streaming call in this many for calibration")
    ap.add_argument("--max-mean-diff", type=float, default=0.01, help="fail if the mouth channels move more than this on average")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    if not args.model.is_file():
        ap.error(f"{args.model}: no such model file")
    if args.out.resolve() == args.model.resolve():
        ap.error("write the int8 model to a new file: the float model is its source")
    if not (args.data / "val.npz").is_file():
        ap.error(f"{args.data / 'val.npz'} is missing: run `python -m livekit_avatar_plugin.training.gen_data` first")
    val = load_eval(args.data / "val.npz")
    rng = np.random.default_rng(args.seed)
    order = rng.permutation(len(val))
    if len(order) < args.calibration + args.check:
        ap.error(f"{args.data / 'val.npz'} has {len(val)} utterances; {args.calibration} + {args.check} are needed")
    calib = [val[i] for i in order[: args.calibration]]
    check = [val[i] for i in order[args.calibration : args.calibration + args.check]]
    float_model = LipSyncModel(args.model, providers=["CPUExecutionProvider"])
    t0 = time.time()
    feeds = calibration_feeds(float_model, calib, rng, args.every)
    print(f"calibration: {len(feeds)} streaming calls from {len(calib)} validation utterances ({time.time() - t0:.0f}s)", flush=True)

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._it = iter(feeds)

        def get_next(self):
            return next(self._it, None)

    with tempfile.TemporaryDirectory() as tmp:
        pre, q = Path(tmp) / "pre.onnx", Path(tmp) / "int8.onnx"
        quant_pre_process(str(args.model), str(pre))
        quantize_static(
            str(pre), str(q), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
            weight_type=QuantType.QInt8, activation_type=QuantType.QUInt8,
            nodes_to_exclude=_state_nodes(pre),
        )  # fmt: skip
        _tag(q, args.model, len(feeds))
        int8_model = LipSyncModel(q, providers=["CPUExecutionProvider"])
        t0 = time.time()
        diff = compare(float_model, int8_model, check)
        print(
            f"int8 vs float on {len(check)} other validation utterances: max |diff| {diff['max_abs']:.4f}, "
            f"mean {diff['mean_abs']:.5f}; streaming vs offline {diff['stream_vs_offline']:.1e} ({time.time() - t0:.0f}s)",
            flush=True,
        )
        if diff["mean_abs"] > args.max_mean_diff or diff["stream_vs_offline"] > 1e-3:
            print(f"not written: the int8 model is too far from {args.model.name}", file=sys.stderr)
            return 1
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_bytes(q.read_bytes())
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.2f} MB; float {args.model.stat().st_size / 1e6:.2f} MB)")
    return 0


def _state_nodes(path: Path) -> list[str]:
    """The nodes that join each layer's state to its new frames and cut the next state.

    They stay float: a state that left the graph dequantised and came back requantised
    with another scale would make streaming differ from offline.
    """
    import onnx

    return [n.name for n in onnx.load(str(path)).graph.node if n.op_type in ("Concat", "Slice")]


def _tag(path: Path, source: Path, n_calls: int) -> None:
    """Record the quantisation in the model's ``train`` metadata."""
    import onnx

    model = onnx.load(str(path))
    props = {p.key: p for p in model.metadata_props}
    train = json.loads(props["train"].value) if "train" in props else {}
    train["quantized"] = {"from": source.name, "weights": "int8 per channel", "activations": "uint8", "calibration_calls": n_calls}
    if "train" in props:
        props["train"].value = json.dumps(train)
    else:
        e = model.metadata_props.add()
        e.key, e.value = "train", json.dumps(train)
    onnx.save(model, str(path))


if __name__ == "__main__":
    sys.exit(main())
