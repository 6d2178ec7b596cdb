"""Re-export an ensemble ONNX from before fusing (one sub-graph per member) as one network.

    python -m livekit_avatar_plugin.training.fuse old.onnx models/lipsync/lipsync.onnx

Reads the members' weights, feature normalisation and the ensemble's logit offset out
of the graph the old ``ensemble.py`` wrote, rebuilds the torch ``Ensemble`` and exports
it with ``export.export`` (``model.StreamStep``: same numbers, far cheaper per call).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

from .model import Ensemble, LipSyncTCN


def load_ensemble(path: Path) -> tuple[Ensemble, dict]:
    """The torch ``Ensemble`` in an unfused ensemble ONNX, and the graph's ``train`` metadata."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    g = model.graph
    meta = {p.key: p.value for p in model.metadata_props}
    consts = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    for n in g.node:  # the exporter aliases shared constants through Identity nodes
        if n.op_type == "Identity" and n.input[0] in consts:
            consts[n.output[0]] = consts[n.input[0]]
    weights = {k.removeprefix("net."): torch.from_numpy(v.copy()) for k, v in consts.items() if k.startswith("net.members.")}
    n_members = 1 + max(int(k.split(".")[1]) for k in weights)
    width, n_mels = weights["members.0.inp.weight"].shape[:2]
    n_out = weights["members.0.out.weight"].shape[0]
    n_layers = 1 + max(int(k.split(".")[3]) for k in weights if ".convs." in k)
    kernel = weights["members.0.convs.0.weight"].shape[2]
    dilations = [s // (kernel - 1) for s in json.loads(meta["state_sizes"])[1 : 1 + n_layers]]

    def per_node(op: str, channels: int) -> list[np.ndarray]:
        """Second inputs of ``op`` nodes that are [1, channels, 1] constants, in graph order."""
        return [
            consts[n.input[1]].reshape(-1)
            for n in g.node
            if n.op_type == op and n.input[1] in consts and consts[n.input[1]].shape == (1, channels, 1)
        ]

    means, stds, offsets = per_node("Sub", n_mels), per_node("Div", n_mels), per_node("Add", n_out)
    if len(means) != n_members or len(stds) != n_members or len(offsets) != 1:
        raise ValueError(f"{path}: not an unfused ensemble graph from ensemble.py")
    members = []
    for i in range(n_members):
        net = LipSyncTCN(n_mels=n_mels, width=width, n_out=n_out, dilations=dilations, kernel=kernel)
        sd = {k.split(".", 2)[2]: v for k, v in weights.items() if k.startswith(f"members.{i}.")}
        net.load_state_dict({**sd, "mean": torch.from_numpy(means[i].copy()), "std": torch.from_numpy(stds[i].copy())})
        members.append(net.eval())
    ens = Ensemble(members).eval()
    ens.offset.copy_(torch.from_numpy(offsets[0].copy()))
    return ens, json.loads(meta.get("train", "{}"))


def main(argv: list[str] | None = None) -> int:
    from .export import export

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("src", type=Path)
    ap.add_argument("dst", type=Path)
    args = ap.parse_args(argv)
    ens, meta = load_ensemble(args.src)
    p = export(ens, args.dst, meta={**meta, "fused_from": args.src.name})
    print(f"wrote {p} ({p.stat().st_size / 1e6:.2f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
