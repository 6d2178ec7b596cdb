"""Build a footage avatar from the user's own talking clip (``livekit-avatar create CLIP``).

Two passes over the clip:

1. track the face in every frame (25 fps), read the audio, and decide everything: which
   frames are lost, the A/V offset of the clip, its parts (idle, listening, talking), the
   framing of the canvas, the head pose of every frame, the mouth shape measured on every
   frame and how those shapes map onto the lip-sync model's channels;
2. decode again and write what was decided: the base loops, cropped to the canvas and
   made seamless, and the mouth atlas, every crop warped into the canonical space.

Pass one's measurements live in ``footage_analysis`` (tracking, framing, head pose) and
``footage_speech`` (A/V offset, mouth calibration, parts); pass two's mouth side in
``footage_atlas``. The package is written atomically (``package.write_package``); nothing is left behind on
an error.
"""

from __future__ import annotations

import hashlib
import io
import logging
import math
import os
import time
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

from . import video as V
from .avatar import CorruptVideoError, PartRangeError
from .segmentation import segment_frame
from .footage import (
    FOOTAGE_VERSION,
    KEY_INTERVAL,
    LOOP_NAMES,
    MOUTH_POINTS,
    FootageAvatar,
    apply_affine,
    load_footage_avatar,
)
from .footage_analysis import (
    CROSSFADE,
    FPS,
    TRACK_MAX_SIDE,
    Framing,
    Pose,
    Progress,
    check_track,
    frame_canvas,
    head_pose,
    mouth_shapes,
    smooth,
    track_clip,
    true_runs,
)
from .package import write_package
from .footage_speech import calibrate, channels_at_frames, close_gaps, estimate_offset, find_parts, loop_range, moving_mouth, voiced_frames
from .footage_atlas import MASK_SCALE, PlateSampler, mask_png, mouth_mask, ring_points, sample_mean, warp_to

log = logging.getLogger(__name__)

MIN_TALKING_S = 30.0  # under this, more footage would give better mouths
LOOP_MAX_S = {"idle": 12.0, "listening": 12.0, "talking": 24.0}
ATLAS_MAX = 4500
JPEG_QUALITY = 90
LOOP_CRF = "20"


def _encoder(buf: io.BytesIO, canvas: tuple[int, int]):
    import av

    out = av.open(buf, "w", format="mp4")
    s = out.add_stream("libx264", rate=int(FPS))
    s.width, s.height = canvas
    s.pix_fmt = "yuv420p"
    # fixed key frames for seeking, no B-frames so each packet decodes to its frame at once
    s.options = {"crf": LOOP_CRF, "preset": "medium", "g": str(KEY_INTERVAL), "keyint_min": str(KEY_INTERVAL),
                 "sc_threshold": "0", "bf": "0", "tune": "fastdecode"}
    return out, s


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def create_footage_avatar(
    clip: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    parts: dict[str, tuple[float, float]] | None = None,
    canvas: tuple[int, int] = (512, 512),
    progress: Progress | None = None,
) -> FootageAvatar:
    """Build a footage avatar package from a talking clip; writes ``out_dir`` atomically.

    ``parts`` pins any of idle, listening and talking to a time range in seconds; the rest
    are found from the clip's audio (voice activity) and motion."""
    t_start = time.perf_counter()
    report: Progress = progress or (lambda stage, frac: None)
    clip = Path(clip)
    report("reading the clip", 0.0)
    info = V.probe_clip(clip)
    user = dict(parts or {})
    for name, (a, b) in user.items():
        if name not in LOOP_NAMES:
            raise PartRangeError(f"unknown part {name!r}; parts are {LOOP_NAMES}")
        if not (0 <= a < b <= info.duration_s + 1e-6) or b - a < 1.0:
            raise PartRangeError(f"--{name} {a:g}-{b:g}: the range must lie inside the clip (0-{info.duration_s:.1f} s) "
                             "and last at least 1 s")

    tr = track_clip(info, lambda stage, f: report(stage, 0.02 + 0.58 * f))
    check_track(info, tr)
    n = len(tr.found)

    report("reading the audio", 0.6)
    audio = V.read_audio(info)
    if audio is not None and float(np.abs(audio).max(initial=0.0)) < 1e-4:
        audio = None  # a silent track carries no sync or calibration either
    if audio is None:
        log.warning("%s has no audio: the A/V offset cannot be measured and the mouth calibration uses "
                    "default ranges; the avatar still works", clip.name)

    framing = frame_canvas(tr, canvas)
    pose = head_pose(tr, framing)
    shapes = mouth_shapes(pose)
    found = tr.found
    offset_ms, offset_r = 0.0, None
    audio_ch = None
    if audio is not None:
        from .._audio.lipsync import LipSyncModel

        model = LipSyncModel.load()
        ch = model.infer(audio, 16000)
        offset_ms, offset_r = estimate_offset(ch[:, 0], model.fps, shapes[:, 0], found)
        if offset_r < 0.1:
            log.warning("the A/V offset of %s could not be measured (best correlation %.2f); assuming 0 ms",
                        clip.name, offset_r)
            offset_ms = 0.0
        elif abs(offset_ms) > 20:
            log.info("%s: the picture is %+.0f ms against the sound; corrected", clip.name, offset_ms)
        audio_ch = channels_at_frames(ch, model.fps, n, offset_ms / 1000.0)
        talking = voiced_frames(audio, n)
    else:
        talking = moving_mouth(shapes[:, 0], found)

    chosen = find_parts(found, talking, pose, user)
    talking_frames = chosen["talking"]
    if talking_frames is None:
        log.warning("no talking found in %s: the mouths come from silent footage", clip.name)
        talking_frames = chosen["talking"] = found.copy()
    talking_s = float(talking_frames.sum() / FPS)
    if talking_s < MIN_TALKING_S:
        log.warning("only %.0f s of talking in %s: more footage (90 s is good) gives better mouths; "
                    "the avatar still works", talking_s, clip.name)
    calib = calibrate(shapes, found, talking_frames, audio_ch)

    loops: dict[str, dict] = {}
    ranges: dict[str, tuple[int, int]] = {}
    for name in LOOP_NAMES:
        frames = chosen[name]
        if frames is None:
            continue
        if name == "talking":  # the base mouth is never shown: short pauses may stay in
            frames = close_gaps(frames, int(2 * FPS))
        ranges[name] = loop_range(frames & found, pose, tr.thumbs, LOOP_MAX_S[name])
    stand_ins = {"idle": ("listening", "talking"), "listening": ("idle", "talking"), "talking": ()}
    for name in LOOP_NAMES:
        if name in ranges:
            a, b = ranges[name]
            loops[name] = {"file": f"{name}.mp4", "own_mouth": name != "talking",
                           "source_s": [round(a / FPS, 2), round(b / FPS, 2)]}
            continue
        # a part the clip lacks: another loop stands in (talking frames with the mouth at rest)
        other = next(o for o in stand_ins[name] if o in ranges)
        loops[name] = {"file": f"{other}.mp4", "own_mouth": other != "talking", "stand_in": other}
        log.info("%s has no %s part: the %s loop stands in", clip.name, name, other)

    box, mask, oval_index = mouth_mask(pose)
    ring_pts = ring_points(mask, box, pose)
    atlas_frames = np.flatnonzero(found)
    if len(atlas_frames) > ATLAS_MAX:  # keep runs: thin by whole-second blocks
        blocks = atlas_frames // int(FPS)
        keep = np.unique(blocks)[:: int(math.ceil(len(np.unique(blocks)) / (ATLAS_MAX / FPS)))]
        atlas_frames = atlas_frames[np.isin(blocks, keep)]
    atlas_index = {int(f): k for k, f in enumerate(atlas_frames)}

    files, arrays = _second_pass(info, framing, pose, ranges, atlas_index, box, ring_pts, oval_index, n,
                                 lambda f: report("writing loops and mouths", 0.62 + 0.33 * f))
    jpegs, atlas_ring = files.pop("_atlas"), arrays.pop("_atlas_ring")
    offsets = np.zeros(len(atlas_frames) + 1, np.int64)
    offsets[1:] = np.cumsum([len(j) for j in jpegs])
    follows = np.zeros(len(atlas_frames), bool)
    follows[1:] = np.diff(atlas_frames) == 1
    atlas_npz = io.BytesIO()
    np.savez_compressed(
        atlas_npz, offsets=offsets, keys=calib.keys[atlas_frames].astype(np.float32),
        shapes=shapes[atlas_frames].astype(np.float32), poses=pose.poses[atlas_frames].astype(np.float32),
        follows=follows, ring=atlas_ring.astype(np.float32), box=np.array(box, np.int64),
        template=pose.template.astype(np.float32), source_frames=atlas_frames.astype(np.int64),
        oval_index=oval_index.astype(np.int64), oval=pose.canonical[atlas_frames][:, oval_index].astype(np.float32),
        mouth=pose.canonical[atlas_frames][:, MOUTH_POINTS].mean(1).astype(np.float32),
    )
    loops_npz = io.BytesIO()
    np.savez_compressed(loops_npz, **arrays)
    mask_png = io.BytesIO()
    Image.fromarray(mask).save(mask_png, format="PNG")
    files.update({"atlas.bin": b"".join(jpegs), "atlas.npz": atlas_npz.getvalue(),
                  "loops.npz": loops_npz.getvalue(), "mask.png": mask_png.getvalue()})

    report("writing the package", 0.96)
    from .. import __version__
    from .._paths import model_path

    meta = {
        "kind": "footage",
        "version": FOOTAGE_VERSION,
        "canvas": list(canvas),
        "fps": FPS,
        "face_width": round(pose.face_width, 3),
        "av_offset_ms": round(offset_ms, 1),
        "av_offset_r": None if offset_r is None else round(offset_r, 3),
        "loops": loops,
        "parts": {k: None if v is None else [[round(a / FPS, 2), round(b / FPS, 2)] for a, b in true_runs(v)]
                  for k, v in chosen.items()},
        "calibration": calib.meta,
        "atlas": {"crops": int(len(atlas_frames)), "box": list(box)},
        "person_masks": {"scale": MASK_SCALE, "model": "MediaPipe selfie segmentation 0.10.14, converted to ONNX"},
        "stabilised": None if tr.shake is None else {
            "shake_rms_px": round(float(np.sqrt((tr.shake**2).sum(1).mean())), 2),
            "crop_px": [round(canvas[0] / framing.scale, 1), round(canvas[1] / framing.scale, 1)]},
        "stats": {"frames": n, "face_lost": int(n - found.sum()), "faces_max": tr.max_faces,
                  "talking_s": round(talking_s, 1), "build_s": round(time.perf_counter() - t_start, 1)},
        "provenance": {
            "source": clip.name, "source_sha256": _sha256_file(clip), "duration_s": round(info.duration_s, 3),
            "size": [info.width, info.height], "rotation": info.rotation, "fps": round(info.nominal_fps, 3),
            "variable_fps": info.variable_fps, "video_codec": info.video_codec, "audio": info.has_audio,
            "builder": f"livekit-avatar-plugin {__version__}",
            "lipsync_model_sha256": _sha256_file(model_path("lipsync", "lipsync.onnx")),
            "face_models": "MediaPipe face detection and mesh 0.10.14, converted to ONNX",
        },
    }
    write_package(Path(out_dir), files, meta)
    report("done", 1.0)
    log.info("footage avatar written in %.1f s", time.perf_counter() - t_start)
    return load_footage_avatar(out_dir)


def _second_pass(
    info: V.ClipInfo,
    framing: Framing,
    pose: Pose,
    ranges: dict[str, tuple[int, int]],
    atlas_index: dict[int, int],
    box: tuple[int, int, int, int],
    ring_pts: np.ndarray,
    oval_index: np.ndarray,
    n: int,
    progress: Callable[[float], None],
) -> tuple[dict, dict]:
    """Decode the clip again: loops cropped to the canvas and made seamless, and the
    atlas crops warped into the canonical space."""
    W, H = framing.canvas
    # the base's outline bounds the blend frame after frame: smoothed, or its edge would shimmer
    found = np.isfinite(pose.canonical[:, 0, 0])
    outline = smooth(np.nan_to_num(pose.canonical[:, oval_index]), 1.5, found)
    bufs, encoders = {}, {}
    arrays: dict[str, np.ndarray] = {}
    preroll: dict[str, list[np.ndarray]] = {name: [] for name in ranges}
    for name, (a, b) in ranges.items():
        bufs[name] = io.BytesIO()
        encoders[name] = _encoder(bufs[name], (W, H))
        arrays[f"{name}_transforms"] = pose.transforms[a:b].astype(np.float32).copy()
        arrays[f"{name}_poses"] = pose.poses[a:b].astype(np.float32).copy()
        arrays[f"{name}_ring"] = np.zeros((b - a, 3), np.float32)
        arrays[f"{name}_oval"] = outline[a:b].astype(np.float32)
    jpegs: list[bytes] = [b""] * len(atlas_index)
    masks: dict[str, list[bytes]] = {name: [] for name in ranges}
    plate = PlateSampler((W, H))
    atlas_ring = np.zeros((len(atlas_index), 3), np.float32)
    bw, bh = box[2], box[3]
    mask_pts = ring_pts - [box[0], box[1]]
    import av

    last = 0
    for i, rgb in enumerate(V.read_frames(info, FPS, max_side=TRACK_MAX_SIDE)):
        if i >= n:
            break
        img = None
        for name, (a, b) in ranges.items():
            if a - CROSSFADE <= i < b:
                if img is None:
                    img = Image.fromarray(rgb)
                frame = np.asarray(img.resize((W, H), Image.Resampling.LANCZOS, box=framing.box(i)))
                if i < a:
                    preroll[name].append(frame)
                    continue
                k = i - (b - CROSSFADE)
                tf = pose.transforms[i]
                if k >= 0 and k < len(preroll[name]):
                    # the loop's end runs into the frames before its start: the seam disappears
                    w = (k + 1) / (CROSSFADE + 1)
                    frame = (frame * (1 - w) + preroll[name][k] * w + 0.5).astype(np.uint8)
                    tf = pose.transforms[i] * (1 - w) + pose.transforms[a - CROSSFADE + k] * w
                    arrays[f"{name}_transforms"][i - a] = tf
                    arrays[f"{name}_oval"][i - a] = outline[i] * (1 - w) + outline[a - CROSSFADE + k] * w
                arrays[f"{name}_ring"][i - a] = sample_mean(frame, apply_affine(tf, ring_pts))
                person = segment_frame(frame, edge_px=max(1.0, W / 256))
                masks[name].append(mask_png(person))
                plate.add(frame, person)
                out, stream = encoders[name]
                for p in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                    out.mux(p)
        ck = atlas_index.get(i)  # this frame's atlas crop, if any
        if ck is not None:
            if img is None:
                img = Image.fromarray(rgb)
            # canonical box pixel -> canvas (frame's pose) -> clip frame, in one warp
            to_canvas = pose.transforms[i].copy()
            to_canvas[:, 2] += to_canvas[:, :2] @ np.array([box[0], box[1]], float)
            to_frame = to_canvas / framing.scale
            to_frame[:, 2] += framing.origin(i)
            crop = warp_to(img, to_frame, (bw, bh))
            atlas_ring[ck] = sample_mean(crop, mask_pts)
            buf = io.BytesIO()
            Image.fromarray(crop).save(buf, format="JPEG", quality=JPEG_QUALITY)
            jpegs[ck] = buf.getvalue()
        if i - last >= 10:
            progress(i / n)
            last = i
    for name in ranges:
        # light changes slowly; frame-to-frame differences in the ring are sampling noise,
        # and a gain that follows them makes the mouth shimmer
        arrays[f"{name}_ring"] = smooth(arrays[f"{name}_ring"], 4.0).astype(np.float32)
    files: dict[str, bytes | list[bytes]] = {}  # "_atlas": the crops' JPEGs, one per crop
    blobs: list[bytes] = []
    for name in ranges:
        offsets = np.zeros(len(masks[name]) + 1, np.int64)
        offsets[1:] = sum(len(b) for b in blobs) + np.cumsum([len(b) for b in masks[name]])
        arrays[f"{name}_mask_offsets"] = offsets
        blobs += masks[name]
    files["masks.bin"] = b"".join(blobs)
    files["plate.png"] = plate.png()
    for name, (out, stream) in encoders.items():
        for p in stream.encode():
            out.mux(p)
        out.close()
        files[f"{name}.mp4"] = bufs[name].getvalue()
    if any(not j for j in jpegs):
        raise CorruptVideoError(f"{info.path.name} gave fewer frames on the second read than on the first")
    files["_atlas"] = jpegs
    arrays["_atlas_ring"] = atlas_ring
    return files, arrays
