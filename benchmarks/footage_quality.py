"""Footage avatars, measured on the picture: build one from every clip in a folder, then
render and measure it.

For each clip:
- **build**: time, package size, load time;
- **picture** (``livekit-avatar measure``): held-out flite speech rendered and tracked back:
  r of the lip gap against the phones' opening, p/b/m closures shown, rounding AUC, span,
  lag, face found;
- **seam**: gradient magnitude on the blend boundary of the composited mouth, over the same
  ring of the base frame (median over speaking frames; target <= 1.2);
- **flicker**: constant channels held for 4 s; the lower face the avatar draws (where the
  blend mask is over half in every frame), taken back into the canonical space (so head
  motion cancels), flickers by this many grey levels: the mean absolute second temporal
  difference, which smooth motion leaves out and a frame that jumps and comes back does
  not (target < 1); the plain change per frame is reported too;
- **re-synthesis**: an avatar built from the clip's first 70 % speaks the audio of its last
  30 %: r between the avatar's lip gap and the person's, beside r of the lip-sync model's
  opening against the person's (the ceiling). The person and the avatar side by side go to
  ``--out`` as a video and a contact sheet. They show a real person's footage: they are
  written to ``artifacts/`` (ignored by git) and never committed.

Tune on ``../shared/footage/dev``; report on ``eval`` (the default).

    .venv/bin/python benchmarks/footage_quality.py [--clips ../shared/footage/eval] [--utterances 20]
"""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from livekit_avatar_plugin.evaluation.picture import measure_avatar  # noqa: E402
from livekit_avatar_plugin._face import video as V  # noqa: E402
from livekit_avatar_plugin._face.footage import load_footage_avatar  # noqa: E402
from livekit_avatar_plugin._face.footage_build import create_footage_avatar  # noqa: E402
from livekit_avatar_plugin._face.tracking import FaceTracker, mouth_opening  # noqa: E402
from livekit_avatar_plugin._render.footage_renderer import FootageRenderer  # noqa: E402
from livekit_avatar_plugin._state import ConversationState  # noqa: E402

FPS = 25.0
LUMA = np.array([0.299, 0.587, 0.114], np.float32)


def _luma(rgb: np.ndarray) -> np.ndarray:
    return rgb[..., :3].astype(np.float32) @ LUMA


def _grad(lum: np.ndarray) -> np.ndarray:
    gy, gx = np.gradient(lum)
    return np.hypot(gx, gy)


def _speech_channels(seconds: float = 8.0) -> np.ndarray:
    """Lip-sync channels of held-out speech at 25 fps (frame centres)."""
    from livekit_avatar_plugin._audio.lipsync import LipSyncModel
    from livekit_avatar_plugin.training.data import cache_dir
    from livekit_avatar_plugin.training.evaluate import get_eval_set

    model = LipSyncModel.load()
    rows = []
    for u in get_eval_set("flite", 6, cache_dir()):
        ch = model.infer(u.audio, u.sr)
        n = int(len(u.audio) / u.sr * FPS)
        t = (np.arange(n) + 0.5) / FPS * model.fps
        rows.append(np.stack([np.interp(t, np.arange(len(ch)), ch[:, c]) for c in range(ch.shape[1])], 1))
        if sum(len(r) for r in rows) >= seconds * FPS:
            break
    return np.concatenate(rows)[: int(seconds * FPS)]


def seam_and_flicker(package: Path, size: tuple[int, int]) -> dict:
    """Seam ratio over speaking frames, and flicker with the channels held still."""
    from livekit_avatar_plugin._face.footage import CHANNELS

    av = load_footage_avatar(package)
    r = FootageRenderer(av, *size)
    loop = av.loops["talking"]
    player = r._players[loop.file]
    mask = Image.fromarray(av.atlas.mask)
    speak = ConversationState.SPEAKING
    for k in range(10):  # into the talking loop, past the crossfade
        r.render_rgba({}, speak, k / FPS)
    ratios, jumps, last_crop = [], 0, None
    for k, row in enumerate(_speech_channels()):
        f = r._frame_index("talking") % loop.frames
        out = r.render_rgba(dict(zip(CHANNELS, map(float, row))), speak, (10 + k) / FPS)
        if r._placed is None:
            continue
        m, (x0, y0, x1, y1), crop = r._placed
        jumps += int(last_crop is not None and crop not in (last_crop, last_crop + 1))
        last_crop = crop
        comp = out[r.layout.dst][y0:y1, x0:x1]
        base = player.rgba(f)[r.layout.src][y0:y1, x0:x1]
        inv = np.linalg.inv(np.vstack([m, [0, 0, 1]]))[:2]
        inv[:, 2] += inv[:, :2] @ (x0, y0)
        alpha = np.asarray(mask.transform((x1 - x0, y1 - y0), Image.AFFINE, tuple(inv.reshape(-1)), resample=Image.BILINEAR))
        ring = (alpha > 0.2 * 255) & (alpha < 0.8 * 255)
        gb = _grad(_luma(base))[ring].mean()
        if gb > 0:
            ratios.append(_grad(_luma(comp))[ring].mean() / gb)
    n_speech = k + 1
    still = dict(zip(CHANNELS, (0.35, 0.0, 0.2, 0.2, 0.0)))
    box_w, box_h = av.atlas.box[2], av.atlas.box[3]
    backs, drawn = [], np.full((box_h, box_w), 255, np.uint8)
    for k in range(int(4 * FPS)):
        out = r.render_rgba(still, speak, (200 + k) / FPS)
        if r._placed is None:
            continue
        m, _, _ = r._placed
        np.minimum(drawn, r._clip, out=drawn)  # the blend mask this frame had
        region = Image.fromarray(np.ascontiguousarray(out[r.layout.dst][..., :3]))
        backs.append(_luma(np.asarray(region.transform((box_w, box_h), Image.AFFINE, tuple(m.reshape(-1)),
                                                       resample=Image.BICUBIC))))
    # where the avatar drew the mouth (more than half) in every frame
    b = np.array(backs)[:, drawn > 128]
    # flicker: what jumps from one frame and back, not what moves smoothly (the second
    # temporal difference); the change per frame (first difference) is reported beside it
    flicker = np.abs(b[1:-1] - (b[:-2] + b[2:]) / 2).mean() if len(b) > 2 else float("nan")
    change = np.abs(np.diff(b, axis=0)).mean() if len(b) > 1 else float("nan")
    return {
        "seam_ratio": float(np.median(ratios)) if ratios else float("nan"),
        "seam_ratio_p95": float(np.percentile(ratios, 95)) if ratios else float("nan"),
        "flicker_grey": float(flicker),
        "change_per_frame_grey": float(change),
        "crop_jumps_per_s": jumps / (n_speech / FPS),
    }


def _track_gaps(frames: list[np.ndarray]) -> np.ndarray:
    tracker = FaceTracker()
    gaps = np.full(len(frames), np.nan)
    for i, rgb in enumerate(frames):
        face = tracker.update(rgb)
        if face is not None:
            gaps[i] = mouth_opening(face.points)[0]
    return gaps


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    ok = np.isfinite(a) & np.isfinite(b)
    return float(np.corrcoef(a[ok], b[ok])[0, 1]) if ok.sum() > 2 else float("nan")


def resynthesis(clip: Path, work: Path, out_dir: Path) -> dict:
    """Build from the first 70 %, speak the last 30 %, compare with the person."""
    from livekit_avatar_plugin._audio.lipsync import LipSyncModel
    from livekit_avatar_plugin._pipeline import load_pipeline

    info = V.probe_clip(clip)
    cut = 0.7 * info.duration_s
    head = work / f"{clip.stem}_head.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(clip), "-t", f"{cut:.3f}", "-c:v", "libx264", "-crf", "12",
                    "-c:a", "aac", "-b:a", "192k", str(head)], check=True)
    av = create_footage_avatar(head, work / f"{clip.stem}_head_av")
    offset_s = av.offset_ms / 1000.0
    audio = V.read_audio(info)
    tail = audio[int(cut * 16000):]
    person = list(V.read_frames(info, FPS, start_s=cut))
    n = min(len(person), int(len(tail) / 16000 * FPS))
    person = person[:n]
    model = LipSyncModel.load()
    ch = model.infer(tail, 16000)
    centres = (np.arange(n) + 0.5) / FPS
    rows = np.stack([np.interp(centres * model.fps, np.arange(len(ch)), ch[:, c]) for c in range(ch.shape[1])], 1)
    pipeline = load_pipeline(av.path)
    renderer = pipeline.create_renderer(*av.canvas)
    speak = ConversationState.SPEAKING
    avatar = [renderer.render(dict(zip(model.channels, map(float, row))), speak, k / FPS).copy() for k, row in enumerate(rows)]
    gap_person = _track_gaps(person)
    gap_avatar = _track_gaps(avatar)
    # the person's frame at t shows the sound of t - offset: compare at t + offset
    t_person = np.arange(n) / FPS
    ok = np.isfinite(gap_person)
    aligned = np.interp(centres + offset_s, t_person[ok], gap_person[ok], left=np.nan, right=np.nan)
    result = {"r_avatar_vs_person": _corr(gap_avatar, aligned), "r_model_vs_person": _corr(rows[:, 0], aligned),
              "resynthesis_frames": n, "offset_ms_from_70pct": av.offset_ms}
    out_dir.mkdir(parents=True, exist_ok=True)
    h = av.canvas[1]
    pairs = [_labelled(np.asarray(Image.fromarray(p).resize((round(p.shape[1] * h / p.shape[0]), h))), a)
             for p, a in zip(person, avatar)]
    picks = np.linspace(0, n - 1, 6).astype(int)
    sheet = np.concatenate([np.concatenate([pairs[i] for i in picks[:3]], 1), np.concatenate([pairs[i] for i in picks[3:]], 1)], 0)
    Image.fromarray(sheet).resize((sheet.shape[1] // 2, sheet.shape[0] // 2), Image.LANCZOS).save(out_dir / f"{clip.stem}_resynthesis.png")
    _write_video(out_dir / f"{clip.stem}_resynthesis.mp4", pairs, tail[: int(n / FPS * 16000)])
    return result


def _labelled(person: np.ndarray, avatar: np.ndarray) -> np.ndarray:
    """The person and the avatar side by side, each named in its corner."""
    from PIL import ImageDraw, ImageFont

    pair = Image.fromarray(np.concatenate([person, avatar[..., :3]], 1))
    draw = ImageDraw.Draw(pair)
    font = ImageFont.load_default(size=max(12, avatar.shape[0] // 20))
    for x, label in ((8, "person"), (person.shape[1] + 8, "avatar")):
        draw.text((x, 6), label, fill="white", font=font, stroke_width=2, stroke_fill="black")
    return np.asarray(pair)


def _write_video(path: Path, frames: list[np.ndarray], audio: np.ndarray) -> None:
    with tempfile.TemporaryDirectory() as td:
        wav = Path(td) / "a.wav"
        import wave

        with wave.open(str(wav), "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(16000)
            w.writeframes((np.clip(audio, -1, 1) * 32767).astype(np.int16).tobytes())
        hgt, wid = frames[0].shape[:2]
        proc = subprocess.Popen(["ffmpeg", "-v", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{wid}x{hgt}",
                                 "-r", "25", "-i", "-", "-i", str(wav), "-c:v", "libx264", "-crf", "20", "-pix_fmt", "yuv420p",
                                 "-c:a", "aac", "-shortest", str(path)], stdin=subprocess.PIPE)
        for f in frames:
            proc.stdin.write(np.ascontiguousarray(f[..., :3]).tobytes())
        proc.stdin.close()
        proc.wait()


def run_clip(clip: Path, work: Path, args: argparse.Namespace) -> dict:
    t0 = time.perf_counter()
    package = work / clip.stem
    av = create_footage_avatar(clip, package)
    build_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    load_footage_avatar(package)
    load_s = time.perf_counter() - t0
    res = {"clip": clip.name, "build_s": round(build_s, 1), "load_s": round(load_s, 3),
           "package_mb": round(sum(f["bytes"] for f in av.manifest["files"].values()) / 2**20, 1),
           "av_offset_ms": av.offset_ms, "talking_s": av.manifest["stats"]["talking_s"]}
    report = measure_avatar(str(package), utterances=args.utterances, size=(512, 512))
    res.update({f"picture_{k}": v for k, v in report.as_dict().items()})
    res.update(seam_and_flicker(package, (512, 512)))
    if not args.no_resynthesis:
        res.update(resynthesis(clip, work, args.out))
    return res


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clips", type=Path, default=ROOT.parent / "shared" / "footage" / "eval")
    ap.add_argument("--utterances", type=int, default=20)
    ap.add_argument("--out", type=Path, default=ROOT / "artifacts" / "footage")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--no-resynthesis", action="store_true")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    clips = sorted(args.clips.glob("*.mp4"))
    if not clips:
        print(f"no clips in {args.clips}", file=sys.stderr)
        return 1
    results = []
    with tempfile.TemporaryDirectory() as td:
        for clip in clips:
            print(f"{clip.name} ...", file=sys.stderr, flush=True)
            results.append(run_clip(clip, Path(td), args))
    keys = [("picture_r", "r", "{:.2f}"), ("picture_closures_shown", "closures", "{:.0%}"),
            ("picture_rounding_auc", "rounding AUC", "{:.2f}"), ("picture_lag_ms", "lag ms", "{:+.0f}"),
            ("picture_face_found", "face found", "{:.1%}"), ("seam_ratio", "seam", "{:.2f}"),
            ("seam_ratio_p95", "seam p95", "{:.2f}"), ("flicker_grey", "flicker", "{:.2f}"), ("change_per_frame_grey", "change/frame", "{:.2f}"), ("r_avatar_vs_person", "resynth r", "{:.2f}"),
            ("r_model_vs_person", "model r (ceiling)", "{:.2f}"), ("av_offset_ms", "A/V offset ms", "{:+.0f}"),
            ("package_mb", "MB", "{:.1f}"), ("load_s", "load s", "{:.2f}"), ("build_s", "build s", "{:.0f}")]
    keys = [k for k in keys if k[0] in results[0]]
    print("| clip | " + " | ".join(k[1] for k in keys) + " |")
    print("|---" * (len(keys) + 1) + "|")
    for res in results:
        cells = [fmt.format(res[k]) if isinstance(res.get(k), (int, float)) else "-" for k, _, fmt in keys]
        print(f"| {res['clip']} | " + " | ".join(cells) + " |")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
