"""Export the streaming step function of ``LipSyncTCN`` to ONNX and check it.

    python -m livekit_avatar_plugin.training.export [--ckpt artifacts/lipsync/best.pt]

Graph (``model.StreamStep``): inputs ``feats`` [1, n_mels, 1, n] (raw log-mel, n >= 1)
and ``state_i`` [1, ch_i, 1, size_i]; outputs ``mouth`` [1, C, 1, n] (probabilities) and
``new_state_i``. An ``Ensemble`` is exported as one grouped network.
Metadata (``custom_metadata_map``): channels, fps, lookahead_frames, state sizes.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

from .._audio import features as F
from . import phonemes as P
from .gen_data import LOOKAHEAD_FRAMES
from .model import Ensemble, LipSyncTCN, StreamStep


def export(net: LipSyncTCN | Ensemble, path: Path, meta: dict | None = None) -> Path:
    import onnx
    import onnxruntime as ort
    from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference

    net = net.eval()
    step = StreamStep(net).eval()
    sizes = step.state_sizes
    chans = step.state_channels
    states = [torch.zeros(1, c, 1, s) for c, s in zip(chans, sizes)]
    x = torch.randn(1, step.n_mels, 1, 7) - 3
    in_names = ["feats"] + [f"state_{i}" for i in range(len(sizes))]
    out_names = ["mouth"] + [f"new_state_{i}" for i in range(len(sizes))]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.onnx.export(
        step,
        (x, *states),
        str(path),
        input_names=in_names,
        output_names=out_names,
        dynamic_axes={"feats": {3: "n"}, "mouth": {3: "n"}},
        opset_version=17,
        dynamo=False,
    )
    # symbolic shapes ("n", "n + 2") let onnxruntime prove that a residual's two operands
    # have the same length, so it fuses add + relu into the preceding conv (~10 % per call)
    model = SymbolicShapeInference.infer_shapes(onnx.load(str(path)), auto_merge=True)
    info = {
        "channels": json.dumps(list(P.CHANNELS)),
        "fps": str(F.SAMPLE_RATE / F.HOP),
        "lookahead_frames": str(LOOKAHEAD_FRAMES),
        "state_sizes": json.dumps(sizes),
        "state_channels": json.dumps(chans),
        "receptive_field": str(step.receptive_field),
        "features": json.dumps({"sample_rate": F.SAMPLE_RATE, "hop": F.HOP, "win": F.WIN, "n_mels": F.N_MELS, "fmin": F.FMIN, "fmax": F.FMAX}),
        "train": json.dumps(meta or {}),
    }
    del model.metadata_props[:]
    for k, v in info.items():
        e = model.metadata_props.add()
        e.key, e.value = k, v
    model.producer_name = "livekit_avatar_plugin.training.export"
    onnx.save(model, str(path))
    # check: the ONNX step, chunk by chunk, equals the torch full-window forward
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    feats = (rng.standard_normal((step.n_mels, 300)) - 3).astype(np.float32)
    with torch.no_grad():
        ref = torch.sigmoid(net(torch.from_numpy(feats)[None]))[0].numpy()  # valid outputs
    st = [np.zeros((1, c, 1, s), np.float32) for c, s in zip(chans, sizes)]
    outs = []
    pos = 0
    while pos < feats.shape[1]:
        n = int(rng.integers(1, 40))
        res = sess.run(None, {"feats": feats[None, :, None, pos : pos + n], **{f"state_{i}": s for i, s in enumerate(st)}})
        outs.append(res[0][0, :, 0])
        st = res[1:]
        pos += n
    got = np.concatenate(outs, axis=1)[:, step.receptive_field - 1 :]
    err = float(np.abs(got - ref).max())
    print(f"onnx step vs torch: max abs diff {err:.2e}", flush=True)
    if err > 1e-4:
        raise RuntimeError(f"ONNX export mismatch {err}")
    return path


def main(argv: list[str] | None = None) -> int:
    from .data import cache_dir
    from .train import MODEL_DIR

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--ckpt", type=Path, default=cache_dir() / "best.pt")
    ap.add_argument("--width", type=int, default=64)
    ap.add_argument("--out", type=Path, default=MODEL_DIR / "lipsync.onnx")
    args = ap.parse_args(argv)
    net = LipSyncTCN(n_mels=F.N_MELS, width=args.width, n_out=len(P.CHANNELS))
    net.load_state_dict(torch.load(args.ckpt))
    p = export(net, args.out, meta={"width": args.width})
    print(f"wrote {p} ({p.stat().st_size / 1e6:.2f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
