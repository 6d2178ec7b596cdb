"""Train the lip-sync TCN and export it to ONNX.

    python -m livekit_avatar_plugin.training.train [--data artifacts/lipsync] [--epochs 24]

Prints one progress line per epoch (losses + validation metrics), writes the loss /
metric curves to ``models/lipsync/training_curves.png`` and the model to
``models/lipsync/lipsync.onnx`` (via ``export.py``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as Fn

from .._audio import features as F
from . import data as D
from . import metrics as M
from . import phonemes as P
from .gen_data import LOOKAHEAD_FRAMES, load_eval
from .model import LipSyncTCN

MODEL_DIR = Path(__file__).resolve().parents[2] / "models" / "lipsync"
CH_WEIGHT = torch.tensor([2.0, 2.0, 1.0, 0.5, 0.5])


def build_stream(z, rf: int):
    """Lay all examples in one stream separated by silence; target for output p.

    Returns features, targets, target mask, family per frame, and whether the frame belongs
    to an utterance's clean version (data without a ``copy`` record counts as clean)."""
    feats, tg, lens, offs = z["feats"], z["targets"], z["lengths"], z["offsets"]
    sil = F.silence_frame().astype(np.float16)
    gap = rf - 1
    toffs = np.concatenate([[0], np.cumsum(lens)])
    total = int(sum(gap + (offs[i + 1] - offs[i]) for i in range(len(lens))))
    S = np.empty((total, F.N_MELS), np.float16)
    Y = np.zeros((total, P.CHANNELS.__len__()), np.float16)
    Mk = np.zeros(total, np.uint8)
    fam = np.full(total, -1, np.int8)
    clean = np.zeros(total, np.uint8)
    copy = z["copy"] if "copy" in z else np.zeros(len(lens), np.int64)
    p = 0
    for i in range(len(lens)):
        S[p : p + gap] = sil
        p += gap
        f = feats[offs[i] : offs[i + 1]]
        n = int(lens[i])
        S[p : p + len(f)] = f
        # output at stream position p + L + j is the mouth at frame j
        Y[p + LOOKAHEAD_FRAMES : p + LOOKAHEAD_FRAMES + n] = tg[toffs[i] : toffs[i] + n]
        Mk[p + LOOKAHEAD_FRAMES : p + LOOKAHEAD_FRAMES + n] = 1
        fam[p - gap : p + len(f)] = z["family"][i]
        clean[p - gap : p + len(f)] = copy[i] == 0
        p += len(f)
    return S, Y, Mk, fam, clean


def val_inputs(utts, rf: int):
    sil = F.silence_frame()
    xs, ys, segs = [], [], []
    for u in utts:
        n = D.n_frames_for(len(u.audio), u.sr)
        f = D.features_for(u.audio, u.sr, LOOKAHEAD_FRAMES)
        x = np.concatenate([np.repeat(sil[None], rf - 1, 0), f])
        xs.append(torch.from_numpy(x.T.copy()).float()[None])
        ys.append(P.targets(u.segs, n))
        segs.append(u.segs)
    return xs, ys, segs


@torch.no_grad()
def predict(net, xs):
    net.eval()
    out = []
    for x in xs:
        p = torch.sigmoid(net(x))[0].T.numpy()
        out.append(p[LOOKAHEAD_FRAMES:])
    net.train()
    return out


def loss_fn(logits, y, mask):
    # logits/y: [B, C, W]; mask [B, W]
    bce = Fn.binary_cross_entropy_with_logits(logits, y, reduction="none")
    w = CH_WEIGHT[None, :, None] * mask[:, None, :]
    # closures are rare and matter: weight frames where lips should be shut
    closed = y[:, 1:2, :]
    w = w * (1.0 + 3.0 * (closed > 0.5).float() * (torch.arange(y.shape[1])[None, :, None] == 1).float())
    return (bce * w).sum() / w.sum().clamp_min(1.0)


def teacher_targets(path: Path, S: np.ndarray, chunk: int = 20000) -> np.ndarray:
    """A trained ONNX model's probabilities over the training stream, aligned with its targets.

    The exported step's output for feature frame k is the mouth at frame k - lookahead,
    which is where ``build_stream`` puts frame k's target, so row k pairs with ``Y[k]``.
    """
    from .._audio.lipsync import LipSyncModel

    teacher = LipSyncModel(path, providers=["CPUExecutionProvider"], intra_op_threads=torch.get_num_threads())
    T = np.empty((len(S), len(P.CHANNELS)), np.float16)
    states = [s.copy() for s in teacher._warm_states]
    t0 = time.time()
    for i in range(0, len(S), chunk):
        out, states = teacher._run(S[i : i + chunk].astype(np.float32), states)
        T[i : i + len(out)] = out
        if (i // chunk) % 50 == 0:
            print(f"teacher {path.name}: {min(i + chunk, len(S))}/{len(S)} frames ({time.time() - t0:.0f}s)", flush=True)
    return T


def _mel_centres() -> np.ndarray:
    fb = F.mel_filterbank()
    freqs = np.arange(fb.shape[0]) * F.SAMPLE_RATE / F.WIN
    return (fb * freqs[:, None]).sum(0) / fb.sum(0)


def spec_augment(x: torch.Tensor, mean: torch.Tensor, rng: np.random.Generator, warp: bool = False, noise: bool = False) -> torch.Tensor:
    """Channel / EQ variation the synthetic voices lack: a random spectral tilt and
    bump on non-silent frames, and one masked band of mel bins (set to the mean)."""
    B, nm, T = x.shape
    bins = torch.linspace(-1.0, 1.0, nm)
    tilt = torch.from_numpy(rng.uniform(-0.35, 0.35, B).astype(np.float32))
    ctr = torch.from_numpy(rng.uniform(-1, 1, B).astype(np.float32))
    amp = torch.from_numpy(rng.uniform(-0.25, 0.25, B).astype(np.float32))
    eq = tilt[:, None] * bins[None, :] + amp[:, None] * torch.exp(-((bins[None, :] - ctr[:, None]) ** 2) / 0.05)
    voiced = x > (float(np.log10(F.LOG_FLOOR)) + 0.3)
    x = torch.where(voiced, torch.clamp(x + eq[:, :, None], min=float(np.log10(F.LOG_FLOOR))), x)
    if noise:
        # additive stationary noise in the power domain: 10^x + N, at 8-35 dB below the
        # crop's loudest frames, white-ish with a random tilt (pink/brown-like)
        ref = x.mean(dim=1).amax(dim=1)  # [B] log10 power of the loudest frame
        snr = torch.from_numpy(rng.uniform(8, 35, B).astype(np.float32))
        slope = torch.from_numpy(rng.uniform(-1.5, 0.3, B).astype(np.float32))
        on = torch.from_numpy((rng.random(B) < 0.5).astype(np.float32))
        lvl = ref - snr / 10.0
        nb = lvl[:, None] + slope[:, None] * (bins[None, :] + 1) / 2 - slope[:, None] * 0.5
        noisy = torch.log10(10.0 ** x + 10.0 ** nb[:, :, None])
        x = torch.where(on[:, None, None] > 0, noisy, x)
    if warp:
        # vocal-tract length warp in the mel domain: read band m at frequency f_m / alpha
        centres = torch.from_numpy(_mel_centres())
        for b in range(B):
            if rng.random() < 0.5:
                alpha = float(np.exp(rng.uniform(np.log(0.88), np.log(1.32))))
                src = torch.from_numpy(np.interp(centres.numpy() / alpha, centres.numpy(), np.arange(nm)).astype(np.float32))
                i0 = src.floor().long().clamp(0, nm - 1)
                i1 = (i0 + 1).clamp(max=nm - 1)
                fr = (src - i0.float())[:, None]
                x[b] = x[b, i0, :] * (1 - fr) + x[b, i1, :] * fr
    for b in range(B):
        if rng.random() < 0.5:
            w = int(rng.integers(1, 6))
            f0 = int(rng.integers(0, nm - w))
            x[b, f0 : f0 + w, :] = mean[f0 : f0 + w, None]
    return x


def plot_curves(hist: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ep = [h["epoch"] for h in hist]
    fig, ax = plt.subplots(1, 2, figsize=(11, 4))
    ax[0].plot(ep, [h["train_loss"] for h in hist], label="train loss")
    ax[0].plot(ep, [h["val_loss"] for h in hist], label="val loss")
    ax[0].set_xlabel("epoch")
    ax[0].set_ylabel("weighted BCE")
    ax[0].legend()
    ax[0].grid(alpha=0.3)
    for k, lab in (("jaw_r", "jaw r"), ("bilabial_recall", "bilabial recall"), ("round_auc", "round AUC")):
        ax[1].plot(ep, [h["val"][k] for h in hist], label=lab)
    ax[1].plot(ep, [1 - h["val"]["false_closure"] for h in hist], label="1 - false closure")
    ax[1].set_xlabel("epoch")
    ax[1].set_ylim(0.4, 1.0)
    ax[1].legend()
    ax[1].grid(alpha=0.3)
    ax[1].set_title("validation (training families, unseen prompts)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=D.cache_dir())
    ap.add_argument("--out", type=Path, default=MODEL_DIR)
    ap.add_argument("--epochs", type=int, default=24)
    ap.add_argument("--steps", type=int, default=120, help="steps per epoch")
    ap.add_argument("--batch", type=int, default=24)
    ap.add_argument("--window", type=int, default=256, help="output frames per crop")
    ap.add_argument("--width", type=int, default=64)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--mel-warp", action="store_true", help="also warp the mel axis (vocal-tract length) on the fly")
    ap.add_argument("--mel-noise", action="store_true", help="also add stationary noise in the mel power domain on the fly")
    ap.add_argument("--teacher", type=Path, default=None, help="distil from this trained ONNX model (its probabilities as soft targets)")
    ap.add_argument("--teacher-weight", type=float, default=0.5, help="share of the loss on the teacher's targets")
    ap.add_argument("--no-specaug", dest="specaug", action="store_false", help="no tilt/EQ/band-mask augmentation")
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    net = LipSyncTCN(n_mels=F.N_MELS, width=args.width, n_out=len(P.CHANNELS))
    rf = net.receptive_field
    z = dict(np.load(args.data / "train.npz"))
    S, Y, Mk, fam, clean = build_stream(z, rf)
    fl = S.astype(np.float32)
    net.mean.copy_(torch.from_numpy(fl[Mk > 0].mean(0)))
    net.std.copy_(torch.from_numpy(fl[Mk > 0].std(0) + 1e-3))
    del fl
    T = teacher_targets(args.teacher, S) if args.teacher else None
    val = load_eval(args.data / "val.npz")
    vx, vy, vsegs = val_inputs(val, rf)
    n_params = sum(p.numel() for p in net.parameters())
    print(f"stream {len(S)} frames ({Mk.sum()} targets), {len(val)} val utterances, RF {rf} frames, {n_params} params", flush=True)
    opt = torch.optim.AdamW(net.parameters(), lr=args.lr, weight_decay=1e-4)
    total_steps = args.epochs * args.steps
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=total_steps, pct_start=0.1)
    W = args.window
    L_in = W + rf - 1
    starts_ok = np.flatnonzero(Mk[rf - 1 : len(Mk) - W] > 0)  # output start positions with a target
    # balance the voice families (espeak would dominate by count); noise-only clips ride along
    fam_of_start = fam[starts_ok + rf - 1]
    groups = [starts_ok[fam_of_start == k] for k in sorted(set(fam_of_start.tolist()))]
    gw = np.array([0.06 if k < 0 else 1.0 for k in sorted(set(fam_of_start.tolist()))])
    gw = gw / gw.sum()
    print("crop groups:", {int(k): len(g) for k, g in zip(sorted(set(fam_of_start.tolist())), groups)}, flush=True)
    hist = []
    best = -1.0
    t_start = time.time()
    for ep in range(1, args.epochs + 1):
        t0 = time.time()
        tl = 0.0
        for _ in range(args.steps):
            gi = rng.choice(len(groups), size=args.batch, p=gw)
            st = np.array([groups[g][rng.integers(len(groups[g]))] for g in gi])  # output start p -> input from p
            idx = st[:, None] + np.arange(L_in)[None, :]
            x = torch.from_numpy(S[idx].astype(np.float32)).permute(0, 2, 1)
            if args.specaug:
                x = spec_augment(x, net.mean, rng, warp=args.mel_warp, noise=args.mel_noise)
            oidx = st[:, None] + (rf - 1) + np.arange(W)[None, :]
            y = torch.from_numpy(Y[oidx].astype(np.float32)).permute(0, 2, 1)
            m = torch.from_numpy(Mk[oidx].astype(np.float32))
            logits = net(x)
            loss = loss_fn(logits, y, m)
            if T is not None:
                # the teacher is followed on clean versions only: under noise it errs more than the phones
                t = torch.from_numpy(T[oidx].astype(np.float32)).permute(0, 2, 1)
                mt = m * torch.from_numpy(clean[oidx].astype(np.float32))
                loss = (1.0 - args.teacher_weight) * loss + args.teacher_weight * loss_fn(logits, t, mt)
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
            opt.step()
            sched.step()
            tl += float(loss.detach())
        preds = predict(net, vx)
        with torch.no_grad():
            vl = float(np.mean([
                float(loss_fn(torch.logit(torch.from_numpy(p.T[None]).clamp(1e-6, 1 - 1e-6)), torch.from_numpy(t.T[None]), torch.ones(1, len(t))))
                for p, t in zip(preds, vy)
            ]))
        vm = M.compute(preds, vy, vsegs)
        score = vm["jaw_r"] + vm["bilabial_recall"] + vm["round_auc"] - 2 * vm["false_closure"]
        h = {"epoch": ep, "train_loss": tl / args.steps, "val_loss": vl, "val": vm, "sec": time.time() - t0}
        hist.append(h)
        flag = ""
        if score > best:
            best = score
            torch.save(net.state_dict(), args.out / "best.pt")
            flag = " *"
        print(
            f"epoch {ep:3d}/{args.epochs}  train {h['train_loss']:.4f}  val {vl:.4f}  jaw_r {vm['jaw_r']:.3f}  "
            f"bilabial {vm['bilabial_recall']:.3f}  false_cl {vm['false_closure']:.3f}  round_auc {vm['round_auc']:.3f}  "
            f"lag {vm['lag_ms']:+.0f}ms  lr {sched.get_last_lr()[0]:.2e}  {h['sec']:.0f}s{flag}",
            flush=True,
        )
        (args.out / "history.json").write_text(json.dumps(hist, indent=1))
        plot_curves(hist, args.out / "training_curves.png")
    print(f"trained in {(time.time() - t_start) / 60:.1f} min", flush=True)
    net.load_state_dict(torch.load(args.out / "best.pt"))
    (args.out / "training_history.json").write_text(json.dumps(hist, indent=1))
    from .export import export

    meta = {"epochs": args.epochs, "width": args.width}
    if args.teacher:
        meta.update(teacher=args.teacher.name, teacher_weight=args.teacher_weight)
    path = export(net, args.out / "lipsync.onnx", meta=meta)
    print(f"exported {path} ({path.stat().st_size / 1e6:.2f} MB)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
