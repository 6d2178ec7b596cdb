#!/usr/bin/env python3
"""Convert MediaPipe's face detector, face mesh, iris and selfie segmentation models
(TFLite) to ONNX.

Reproducible: downloads the ``mediapipe==0.10.14`` wheel with pip (no install, no
dependencies), extracts the four ``.tflite`` files, converts them with the small
converter below, checks the converted graphs with onnx.checker and onnxruntime, and
writes ``models/face/NOTICE`` with the SHA-256 of every source and output file.

The converter understands only the ops these four graphs use (CONV_2D,
DEPTHWISE_CONV_2D, PRELU, ADD, MUL, RELU, HARD_SWISH, LOGISTIC, MAX_POOL_2D, global
AVERAGE_POOL_2D, PAD, RESHAPE, CONCATENATION, RESIZE_BILINEAR, MediaPipe's custom
Convolution2DTransposeBias and DEQUANTIZE of float16 constants). Activations run in NCHW inside the ONNX graph; the
graph input stays NHWC float32 exactly like the TFLite model, and outputs keep the
TFLite shapes, so both can be fed the same arrays.

Needs (build time only): ``pip install onnx tflite``.

    python scripts/convert_face_models.py               # download, convert, check
    python scripts/convert_face_models.py --wheel X.whl # use a wheel already on disk
    python scripts/convert_face_models.py --compare-with-tflite /tmp/tfvenv/bin/python
"""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
OUT_DIR = REPO / "models" / "face"
WHEEL_VERSION = "0.10.14"

# ONNX file name -> path inside the wheel
MODELS = {
    "face_detection_short_range.onnx": "mediapipe/modules/face_detection/face_detection_short_range.tflite",
    "face_landmark.onnx": "mediapipe/modules/face_landmark/face_landmark.tflite",
    "iris_landmark.onnx": "mediapipe/modules/iris_landmark/iris_landmark.tflite",
    "selfie_segmentation.onnx": "mediapipe/modules/selfie_segmentation/selfie_segmentation.tflite",
}

# TFLite enums (schema.fbs); kept literal so the script documents what it relies on.
T_FLOAT32, T_FLOAT16, T_INT32 = 0, 1, 2
PAD_SAME, PAD_VALID = 0, 1
ACT_NONE, ACT_RELU, ACT_RELU6 = 0, 1, 3


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# ----------------------------------------------------------------------------- converter


class _Graph:
    """Reads one TFLite subgraph and emits an equivalent ONNX graph."""

    def __init__(self, buf: bytes, name: str):
        import tflite  # build-time dependency

        self.tfl = tflite
        self.model = tflite.Model.GetRootAsModel(buf, 0)
        self.sg = self.model.Subgraphs(0)
        self.name = name
        self.nodes: list = []
        self.inits: dict[str, np.ndarray] = {}
        self.const: dict[int, np.ndarray] = {}  # tensor index -> constant value (NHWC/TFLite layout)
        self.layout: dict[int, str] = {}  # tensor index -> "nchw" | "plain"
        self._uid = 0
        opnames = {v: k for k, v in vars(tflite.BuiltinOperator).items() if not k.startswith("_")}
        self.opnames = opnames

    # -- helpers
    def tname(self, idx: int) -> str:
        return f"t{idx}_" + self.sg.Tensors(idx).Name().decode().replace("/", "_").replace(";", "_")[:60]

    def shape(self, idx: int) -> list[int]:
        return [int(v) for v in self.sg.Tensors(idx).ShapeAsNumpy()]

    def uid(self, base: str) -> str:
        self._uid += 1
        return f"{base}__{self._uid}"

    def buffer_value(self, idx: int) -> np.ndarray | None:
        t = self.sg.Tensors(idx)
        b = self.model.Buffers(t.Buffer())
        if b is None or b.DataLength() == 0:
            return None
        raw = b.DataAsNumpy().tobytes()
        dtype = {T_FLOAT32: np.float32, T_FLOAT16: np.float16, T_INT32: np.int32}[t.Type()]
        return np.frombuffer(raw, dtype=dtype).reshape(self.shape(idx)).copy()

    def init(self, base: str, value: np.ndarray) -> str:
        name = self.uid(base)
        self.inits[name] = value
        return name

    def node(self, op: str, inputs: list[str], outputs: list[str], **attrs) -> None:
        from onnx import helper

        self.nodes.append(helper.make_node(op, inputs, outputs, name=self.uid(op), **attrs))

    def activation(self, act: int, x: str, out: str) -> None:
        if act == ACT_NONE:
            self.node("Identity", [x], [out])
        elif act == ACT_RELU:
            self.node("Relu", [x], [out])
        elif act == ACT_RELU6:
            self.node("Clip", [x, self.init("zero", np.array(0, np.float32)), self.init("six", np.array(6, np.float32))], [out])
        else:
            raise NotImplementedError(f"fused activation {act}")

    @staticmethod
    def same_pads(in_size: int, k: int, stride: int, dil: int) -> tuple[int, int]:
        eff = (k - 1) * dil + 1
        out = -(-in_size // stride)
        total = max((out - 1) * stride + eff - in_size, 0)
        return total // 2, total - total // 2

    def pads2d(self, padding: int, in_shape: list[int], kh: int, kw: int, sh: int, sw: int, dh=1, dw=1) -> list[int]:
        if padding == PAD_VALID:
            return [0, 0, 0, 0]
        t, b = self.same_pads(in_shape[1], kh, sh, dh)
        left, right = self.same_pads(in_shape[2], kw, sw, dw)
        return [t, left, b, right]

    def as_plain(self, idx: int) -> str:
        """Name of tensor ``idx`` in TFLite (NHWC) layout."""
        name = self.tname(idx)
        if self.layout.get(idx) == "nchw":
            out = self.uid(name + "_nhwc")
            self.node("Transpose", [name], [out], perm=[0, 2, 3, 1])
            return out
        return name

    # -- conversion
    def convert(self):
        from onnx import TensorProto, helper, numpy_helper

        tfl = self.tfl
        sg = self.sg
        inputs = [sg.Inputs(i) for i in range(sg.InputsLength())]
        outputs = [sg.Outputs(i) for i in range(sg.OutputsLength())]
        graph_inputs = []
        for idx in inputs:
            shp = self.shape(idx)
            graph_inputs.append(helper.make_tensor_value_info("input", TensorProto.FLOAT, shp))
            self.node("Transpose", ["input"], [self.tname(idx)], perm=[0, 3, 1, 2])
            self.layout[idx] = "nchw"
        for i in range(sg.TensorsLength()):
            v = self.buffer_value(i)
            if v is not None:
                self.const[i] = v

        for i in range(sg.OperatorsLength()):
            op = sg.Operators(i)
            oc = self.model.OperatorCodes(op.OpcodeIndex())
            code = max(oc.BuiltinCode(), oc.DeprecatedBuiltinCode())
            opname = self.opnames.get(code, str(code))
            if opname == "CUSTOM":
                opname = "CUSTOM:" + oc.CustomCode().decode()
            ins = [int(v) for v in op.InputsAsNumpy()]
            outs = [int(v) for v in op.OutputsAsNumpy()]
            o = outs[0]
            oname = self.tname(o)
            opts_tab = op.BuiltinOptions()

            if opname == "DEQUANTIZE":
                src = self.const.get(ins[0])
                if src is None:
                    raise NotImplementedError("DEQUANTIZE of a non-constant tensor")
                self.const[o] = src.astype(np.float32)
                continue

            if opname in ("CONV_2D", "DEPTHWISE_CONV_2D"):
                depthwise = opname == "DEPTHWISE_CONV_2D"
                opts = (tfl.DepthwiseConv2DOptions if depthwise else tfl.Conv2DOptions)()
                opts.Init(opts_tab.Bytes, opts_tab.Pos)
                w = self.const[ins[1]].astype(np.float32)
                in_shape = self.shape(ins[0])
                if depthwise:  # [1, KH, KW, C*M] -> [C*M, 1, KH, KW]
                    kh, kw = w.shape[1], w.shape[2]
                    wt = w.transpose(3, 0, 1, 2)
                    group = in_shape[3]
                else:  # [O, KH, KW, I] -> [O, I, KH, KW]
                    kh, kw = w.shape[1], w.shape[2]
                    wt = w.transpose(0, 3, 1, 2)
                    group = 1
                dh, dw = opts.DilationHFactor() or 1, opts.DilationWFactor() or 1
                sh, sw = opts.StrideH(), opts.StrideW()
                pads = self.pads2d(opts.Padding(), in_shape, kh, kw, sh, sw, dh, dw)
                node_in = [self.tname(ins[0]), self.init("w", np.ascontiguousarray(wt))]
                if len(ins) > 2 and ins[2] >= 0:
                    node_in.append(self.init("b", self.const[ins[2]].astype(np.float32).reshape(-1)))
                tmp = self.uid(oname + "_pre")
                self.node("Conv", node_in, [tmp], kernel_shape=[kh, kw], strides=[sh, sw],
                          dilations=[dh, dw], pads=pads, group=group)
                self.activation(opts.FusedActivationFunction(), tmp, oname)
                self.layout[o] = "nchw"
            elif opname == "PRELU":
                alpha = self.const[ins[1]].astype(np.float32).reshape(-1)
                self.node("PRelu", [self.tname(ins[0]), self.init("alpha", alpha.reshape(-1, 1, 1))], [oname])
                self.layout[o] = "nchw"
            elif opname == "RELU":
                self.node("Relu", [self.tname(ins[0])], [oname])
                self.layout[o] = self.layout.get(ins[0], "plain")
            elif opname == "LOGISTIC":
                self.node("Sigmoid", [self.tname(ins[0])], [oname])
                self.layout[o] = self.layout.get(ins[0], "plain")
            elif opname == "HARD_SWISH":  # x * relu6(x + 3) / 6; opset 13 has no HardSwish
                gate = self.uid(oname + "_gate")
                self.node("HardSigmoid", [self.tname(ins[0])], [gate], alpha=1.0 / 6.0, beta=0.5)
                self.node("Mul", [self.tname(ins[0]), gate], [oname])
                self.layout[o] = self.layout.get(ins[0], "plain")
            elif opname == "MUL":
                opts = tfl.MulOptions()
                opts.Init(opts_tab.Bytes, opts_tab.Pos)
                a, b = ins
                if self.layout.get(a) != "nchw" or self.layout.get(b) != "nchw":
                    raise NotImplementedError("MUL of tensors not both in NCHW layout")
                tmp = self.uid(oname + "_pre")
                self.node("Mul", [self.tname(a), self.tname(b)], [tmp])  # [1,C,H,W] * [1,C,1,1] broadcasts
                self.activation(opts.FusedActivationFunction(), tmp, oname)
                self.layout[o] = "nchw"
            elif opname == "AVERAGE_POOL_2D":
                opts = tfl.Pool2DOptions()
                opts.Init(opts_tab.Bytes, opts_tab.Pos)
                _, ih, iw, _ = self.shape(ins[0])
                if (opts.FilterHeight(), opts.FilterWidth()) != (ih, iw) or self.shape(o)[1:3] != [1, 1]:
                    raise NotImplementedError("AVERAGE_POOL_2D other than a global average")
                tmp = self.uid(oname + "_pre")
                self.node("GlobalAveragePool", [self.tname(ins[0])], [tmp])
                self.activation(opts.FusedActivationFunction(), tmp, oname)
                self.layout[o] = "nchw"
            elif opname == "RESIZE_BILINEAR":
                opts = tfl.ResizeBilinearOptions()
                opts.Init(opts_tab.Bytes, opts_tab.Pos)
                if opts.AlignCorners() or not opts.HalfPixelCenters():
                    raise NotImplementedError("RESIZE_BILINEAR without half-pixel centres")
                n, oh, ow, c = self.shape(o)
                sizes = self.init("sizes", np.array([n, c, oh, ow], np.int64))
                self.node("Resize", [self.tname(ins[0]), "", "", sizes], [oname], mode="linear",
                          coordinate_transformation_mode="half_pixel")
                self.layout[o] = "nchw"
            elif opname == "CUSTOM:Convolution2DTransposeBias":
                # custom options: TfLiteTransposeConvParams {padding, stride_w, stride_h} as int32
                padding, sw, sh = np.frombuffer(op.CustomOptionsAsNumpy().tobytes()[:12], np.int32)
                w = self.const[ins[1]].astype(np.float32)  # [O, KH, KW, I]
                kh, kw = w.shape[1], w.shape[2]
                _, ih, iw, _ = self.shape(ins[0])
                _, oh, ow, _ = self.shape(o)
                # TfLitePadding: 1 = SAME, 2 = VALID; either way the output size is known
                if padding not in (1, 2):
                    raise NotImplementedError(f"Convolution2DTransposeBias padding {padding}")
                tot_h, tot_w = (ih - 1) * sh + kh - oh, (iw - 1) * sw + kw - ow
                if tot_h < 0 or tot_w < 0:
                    raise NotImplementedError("Convolution2DTransposeBias with output padding")
                pads = [tot_h // 2, tot_w // 2, tot_h - tot_h // 2, tot_w - tot_w // 2]
                node_in = [self.tname(ins[0]), self.init("w", np.ascontiguousarray(w.transpose(3, 0, 1, 2))),
                           self.init("b", self.const[ins[2]].astype(np.float32).reshape(-1))]
                self.node("ConvTranspose", node_in, [oname], kernel_shape=[int(kh), int(kw)],
                          strides=[int(sh), int(sw)], pads=pads)
                self.layout[o] = "nchw"
            elif opname == "ADD":
                opts = tfl.AddOptions()
                opts.Init(opts_tab.Bytes, opts_tab.Pos)
                a, b = ins
                if self.layout.get(a) != self.layout.get(b) or self.shape(a) != self.shape(b):
                    raise NotImplementedError("ADD of tensors in different layouts or shapes")
                tmp = self.uid(oname + "_pre")
                self.node("Add", [self.tname(a), self.tname(b)], [tmp])
                self.activation(opts.FusedActivationFunction(), tmp, oname)
                self.layout[o] = self.layout.get(a, "plain")
            elif opname == "MAX_POOL_2D":
                opts = tfl.Pool2DOptions()
                opts.Init(opts_tab.Bytes, opts_tab.Pos)
                kh, kw = opts.FilterHeight(), opts.FilterWidth()
                sh, sw = opts.StrideH(), opts.StrideW()
                pads = self.pads2d(opts.Padding(), self.shape(ins[0]), kh, kw, sh, sw)
                if any(pads):
                    raise NotImplementedError("padded MAX_POOL_2D")  # -inf vs TFLite semantics
                tmp = self.uid(oname + "_pre")
                self.node("MaxPool", [self.tname(ins[0])], [tmp], kernel_shape=[kh, kw], strides=[sh, sw], pads=pads)
                self.activation(opts.FusedActivationFunction(), tmp, oname)
                self.layout[o] = "nchw"
            elif opname == "PAD":
                p = self.const[ins[1]].astype(np.int64)  # [4, 2] in NHWC
                if self.layout.get(ins[0]) != "nchw":
                    raise NotImplementedError("PAD of a non-NCHW tensor")
                order = [0, 3, 1, 2]
                onnx_pads = [p[d, 0] for d in order] + [p[d, 1] for d in order]
                self.node("Pad", [self.tname(ins[0]), self.init("pads", np.array(onnx_pads, np.int64))], [oname], mode="constant")
                self.layout[o] = "nchw"
            elif opname == "RESHAPE":
                new_shape = np.array(self.shape(o), np.int64)
                self.node("Reshape", [self.as_plain(ins[0]), self.init("shape", new_shape)], [oname])
                self.layout[o] = "plain"
            elif opname == "CONCATENATION":
                opts = tfl.ConcatenationOptions()
                opts.Init(opts_tab.Bytes, opts_tab.Pos)
                axis = opts.Axis()
                rank = len(self.shape(o))
                axis = axis % rank
                tmp = self.uid(oname + "_pre")
                self.node("Concat", [self.as_plain(x) for x in ins], [tmp], axis=axis)
                self.activation(opts.FusedActivationFunction(), tmp, oname)
                self.layout[o] = "plain"
            else:
                raise NotImplementedError(f"TFLite op {opname} is not supported by this converter")

        graph_outputs = []
        for k, idx in enumerate(outputs):
            out_name = sg.Tensors(idx).Name().decode()
            self.node("Identity", [self.as_plain(idx)], [out_name])
            graph_outputs.append(helper.make_tensor_value_info(out_name, TensorProto.FLOAT, self.shape(idx)))
        inits = [numpy_helper.from_array(v, name=k) for k, v in self.inits.items()]
        graph = helper.make_graph(self.nodes, self.name, graph_inputs, graph_outputs, initializer=inits)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)],
                                  producer_name="livekit_avatar_plugin/scripts/convert_face_models.py")
        model.ir_version = 8
        return model


def convert_tflite(tflite_path: Path, onnx_path: Path) -> None:
    import onnx

    model = _Graph(tflite_path.read_bytes(), onnx_path.stem).convert()
    onnx.checker.check_model(model)
    onnx_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = onnx_path.with_suffix(".onnx.tmp")
    onnx.save(model, str(tmp))
    tmp.replace(onnx_path)


# ----------------------------------------------------------------------------- checks

_TFLITE_RUNNER = r"""
import sys, numpy as np
try:
    from tensorflow.lite.python.interpreter import Interpreter
    from tensorflow.lite.python import schema_py_generated as S
except ImportError:
    try:
        from ai_edge_litert.interpreter import Interpreter
        from ai_edge_litert import schema_py_generated as S
    except ImportError:
        from tflite_runtime.interpreter import Interpreter
        S = None
model, inp, out = sys.argv[1:4]
content = open(model, "rb").read()


def builtin_transpose_conv(buf):
    # MediaPipe's custom Convolution2DTransposeBias is TRANSPOSE_CONV with a bias; stock
    # interpreters lack the custom op, so the reference swaps in the built-in one.
    import flatbuffers
    m = S.ModelT.InitFromObj(S.Model.GetRootAsModel(buf, 0))
    custom = [i for i, c in enumerate(m.operatorCodes) if c.customCode == b"Convolution2DTransposeBias"]
    if not custom:
        return buf
    code = S.OperatorCodeT()
    code.builtinCode = S.BuiltinOperator.TRANSPOSE_CONV
    code.deprecatedBuiltinCode = S.BuiltinOperator.TRANSPOSE_CONV
    code.version = 3
    m.operatorCodes.append(code)
    sg = m.subgraphs[0]
    for op in sg.operators:
        if op.opcodeIndex not in custom:
            continue
        padding, sw, sh = np.frombuffer(bytes(op.customOptions)[:12], np.int32)
        shape_buf = S.BufferT()
        shape_buf.data = np.array(sg.tensors[op.outputs[0]].shape, np.int32).view(np.uint8)
        m.buffers.append(shape_buf)
        t = S.TensorT()
        t.shape = np.array([4], np.int32)
        t.type = S.TensorType.INT32
        t.buffer = len(m.buffers) - 1
        t.name = b"transpose_conv_output_shape"
        sg.tensors.append(t)
        x, w, b = op.inputs
        op.inputs = np.array([len(sg.tensors) - 1, w, x, b], np.int32)
        op.opcodeIndex = len(m.operatorCodes) - 1
        opts = S.TransposeConvOptionsT()
        opts.padding = S.Padding.SAME if padding == 1 else S.Padding.VALID
        opts.strideW, opts.strideH = int(sw), int(sh)
        op.builtinOptionsType = S.BuiltinOptions.TransposeConvOptions
        op.builtinOptions = opts
        op.customOptions = None
    b = flatbuffers.Builder(1 << 20)
    b.Finish(m.Pack(b), file_identifier=b"TFL3")
    return bytes(b.Output())


if S is not None:
    content = builtin_transpose_conv(content)
it = Interpreter(model_content=content)
it.allocate_tensors()
x = np.load(inp)
res = {}
for i in range(x.shape[0]):
    it.set_tensor(it.get_input_details()[0]["index"], x[i:i+1])
    it.invoke()
    for d in it.get_output_details():
        res.setdefault(d["name"], []).append(it.get_tensor(d["index"]).copy())
np.savez(out, **{k: np.concatenate(v) for k, v in res.items()})
"""


def _test_inputs(shape: list[int], seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n, h, w, c = shape
    xs = [rng.uniform(-1, 1, (1, h, w, c))]
    # a smooth, image-like input as well as noise
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    xs.append(np.stack([np.sin(6 * xx + k) * np.cos(5 * yy - k) for k in range(c)], -1)[None])
    return np.concatenate(xs).astype(np.float32)


def compare_with_tflite(tflite_path: Path, onnx_path: Path, tf_python: str) -> float:
    import onnxruntime as ort

    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0]
    x = _test_inputs(list(inp.shape))
    with tempfile.TemporaryDirectory() as td:
        np.save(f"{td}/x.npy", x)
        Path(f"{td}/run.py").write_text(_TFLITE_RUNNER)
        subprocess.run([tf_python, f"{td}/run.py", str(tflite_path), f"{td}/x.npy", f"{td}/y.npz"], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        ref = dict(np.load(f"{td}/y.npz"))
    worst = 0.0
    for o in sess.get_outputs():
        got = np.concatenate([sess.run([o.name], {inp.name: x[i:i + 1]})[0] for i in range(len(x))])
        want = ref[o.name]
        err = float(np.max(np.abs(got - want)) / max(1.0, float(np.max(np.abs(want)))))
        print(f"  {onnx_path.name}:{o.name} max rel-abs error vs TFLite {err:.2e}")
        worst = max(worst, err)
    return worst


def smoke_check(onnx_path: Path) -> None:
    import onnxruntime as ort

    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0]
    outs = sess.run(None, {inp.name: _test_inputs(list(inp.shape))[:1]})
    for o, v in zip(sess.get_outputs(), outs):
        assert list(v.shape) == list(o.shape) and np.all(np.isfinite(v)), o.name


# ----------------------------------------------------------------------------- main

NOTICE_HEAD = """\
Face models in this folder
==========================

These ONNX files are converted from TensorFlow Lite models distributed in the
MediaPipe Python wheel `mediapipe=={version}` (PyPI,
{wheel}), Copyright The MediaPipe Authors, licensed under the Apache License,
Version 2.0 (http://www.apache.org/licenses/LICENSE-2.0).

Modification: the TFLite graphs were translated op-for-op to ONNX (NHWC input, NCHW
inside, float16 weights widened to float32) by scripts/convert_face_models.py in this
repository. No weights were changed or retrained.

MediaPipe is distributed under the Apache License 2.0; the full text of the licence is
available at the address above. Neither the MediaPipe authors nor Google endorse this
project.

SHA-256 of the source files (inside the wheel) and of the converted files:

"""


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--wheel", type=Path, help="mediapipe wheel already on disk (else pip download)")
    ap.add_argument("--out", type=Path, default=OUT_DIR)
    ap.add_argument("--compare-with-tflite", metavar="PYTHON",
                    help="a python that has tensorflow (or tflite_runtime) to check outputs against")
    args = ap.parse_args(argv)

    with tempfile.TemporaryDirectory() as td:
        wheel = args.wheel
        if wheel is None:
            print(f"downloading mediapipe=={WHEEL_VERSION} wheel with pip ...")
            subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet",
                            "--python-version", "3.11", "--only-binary=:all:", "--platform",
                            "manylinux_2_17_x86_64", f"mediapipe=={WHEEL_VERSION}", "-d", td], check=True)
            wheel = next(Path(td).glob("mediapipe-*.whl"))
        lines = []
        with zipfile.ZipFile(wheel) as zf:
            for onnx_name, member in MODELS.items():
                src = Path(td) / Path(member).name
                src.write_bytes(zf.read(member))
                dst = args.out / onnx_name
                print(f"converting {member} -> {dst}")
                convert_tflite(src, dst)
                smoke_check(dst)
                if args.compare_with_tflite:
                    err = compare_with_tflite(src, dst, args.compare_with_tflite)
                    if err > 1e-3:
                        print(f"ERROR: {onnx_name} differs from TFLite by {err:.2e}")
                        return 1
                lines.append(f"  {sha256(src)}  {member}\n")
                lines.append(f"  {sha256(dst)}  {onnx_name}\n")
        (args.out / "NOTICE").write_text(NOTICE_HEAD.format(version=WHEEL_VERSION, wheel=wheel.name) + "".join(lines))
    print(f"wrote {args.out}/NOTICE")
    return 0


if __name__ == "__main__":
    sys.exit(main())
