"""Avatar packages: one-shot creation from a portrait photo, loading and validation.

A package is a folder:

    manifest.json     version, sizes, SHA-256 of every file
    image.png         the chest-up working image (face ~200 px wide), RGB
    background.png    clean plate: the background with the person filled in (background model)
    person.png        soft person mask (uint8, 255 = person; selfie segmentation)
    face.png          face-oval mask
    mouth.png         outer-lip mask
    landmarks.npy     (478, 3) float32 face mesh + iris in image.png pixels

``create_avatar`` writes it atomically (temp folder + rename); ``load_avatar`` checks the
version, every checksum, the array shapes and sizes and refuses paths outside the folder.
"""

from __future__ import annotations

import io
import logging
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image, ImageDraw, ImageOps

from livekit_avatar_plugin._paths import model_path

from ..errors import AvatarError
from . import landmarks as L
from .package import AvatarPackageError, read_manifest, read_members, write_package

log = logging.getLogger(__name__)

PACKAGE_VERSION = 1
MAX_PIXELS = 40_000_000
MIN_FACE_PX = 80
WORK_FACE_WIDTH = 200  # face width in the working image, pixels
# chest-up crop around the face centre, in face widths
CROP_LEFT = CROP_RIGHT = 3.0
CROP_UP = 1.7
CROP_DOWN = 2.9
MAX_ARRAY_BYTES = 64 << 20
MAX_SIDE = 4096
FILES = ("image.png", "background.png", "person.png", "face.png", "mouth.png", "landmarks.npy")

Progress = Callable[[str, float], None]


# ----------------------------------------------------------------------------- errors


class AvatarCreationError(AvatarError):
    """Avatar creation failed; ``exit_code`` is the CLI exit status for this cause."""

    exit_code = 10


class NoFaceError(AvatarCreationError):
    exit_code = 11


class FaceTooSmallError(AvatarCreationError):
    exit_code = 12


class CorruptImageError(AvatarCreationError):
    exit_code = 13


class NotAnImageError(AvatarCreationError):
    exit_code = 14


class ImageTooLargeError(AvatarCreationError):
    exit_code = 15


class CorruptVideoError(AvatarCreationError):
    """A video file that cannot be decoded, or ends before its header says it does."""

    exit_code = 16


class VideoTooLargeError(AvatarCreationError):
    """A video file too large to read, or frames too large to track."""

    exit_code = 17


class VideoTooLongError(AvatarCreationError):
    exit_code = 18


class VideoTooShortError(AvatarCreationError):
    exit_code = 19


class StillVideoError(AvatarCreationError):
    """A still image inside a video container: nothing moves, so there is no footage."""

    exit_code = 20


class PartRangeError(AvatarCreationError):
    """An --idle, --listening or --talking range outside the clip, or without a face."""

    exit_code = 21


# ----------------------------------------------------------------------------- the Avatar


@dataclass
class Avatar:
    path: Path
    image: np.ndarray  # (H, W, 3) uint8
    background: np.ndarray  # (H, W, 3) uint8 clean plate
    person: np.ndarray  # (H, W) uint8
    face: np.ndarray  # (H, W) uint8
    mouth: np.ndarray  # (H, W) uint8
    landmarks: np.ndarray  # (478, 3) float32
    manifest: dict = field(default_factory=dict)

    @property
    def size(self) -> tuple[int, int]:
        return self.image.shape[1], self.image.shape[0]

    @property
    def face_width(self) -> float:
        oval = self.landmarks[list(L.FACE_OVAL), 0]
        return float(oval.max() - oval.min())

    @property
    def face_center(self) -> tuple[float, float]:
        p = self.landmarks[:468, :2]
        return float(p[:, 0].mean()), float(p[:, 1].mean())


# ----------------------------------------------------------------------------- reading photos

_MAGIC = (b"\x89PNG", b"\xff\xd8\xff", b"GIF8", b"BM", b"II*\x00", b"MM\x00*", b"\x00\x00\x00\x0cjP")


def _looks_like_image(head: bytes) -> bool:
    if head[:4] == b"RIFF":
        return head[8:12] == b"WEBP"
    return any(head.startswith(m) for m in _MAGIC)


def read_photo(path: str | os.PathLike) -> np.ndarray:
    """Decode a photo to RGB uint8: EXIF orientation, RGBA/LA/P, greyscale, CMYK, 16-bit."""
    path = Path(path)
    try:
        head = path.open("rb").read(16)
    except OSError as exc:
        raise NotAnImageError(f"cannot read {path}: {exc}") from exc
    looks_like_image = _looks_like_image(head)
    try:
        # PIL refuses headers claiming far more pixels than we allow (a decompression
        # bomb) before decoding anything; its global limit is left as it is.
        im: Image.Image = Image.open(path)
    except Image.DecompressionBombError as exc:
        raise ImageTooLargeError(f"{path} claims an absurd size (a decompression bomb?): {exc}") from exc
    except Exception as exc:
        if looks_like_image:
            raise CorruptImageError(f"{path} looks like an image but cannot be decoded: {exc}") from exc
        raise NotAnImageError(f"{path} is neither an image nor a video (a photo, or an MP4, MOV, WebM or MKV clip)") from exc
    w, h = im.size
    if w * h > MAX_PIXELS:
        raise ImageTooLargeError(f"{path} is {w}x{h} = {w * h / 1e6:.1f} MP; the limit is {MAX_PIXELS / 1e6:.0f} MP")
    try:
        with warnings.catch_warnings():
            # Between PIL's warning and error limits; our own limit above already applies.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im.load()
            im = ImageOps.exif_transpose(im)
        return to_rgb(im)
    except Exception as exc:
        raise CorruptImageError(f"{path} is corrupt or truncated: {exc}") from exc


def to_rgb(im: Image.Image) -> np.ndarray:
    mode = im.mode
    a: np.ndarray  # float64 or float32 per branch
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        a = np.asarray(im).astype(np.float64)
        top = 65535.0 if a.max() > 255 or mode.startswith("I;16") else 255.0
        a = np.clip(a / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return np.ascontiguousarray(np.repeat(a[..., None], 3, 2))
    if mode == "F":
        a = np.asarray(im).astype(np.float64)
        a = np.clip(a / max(a.max(), 1e-9) * 255 + 0.5, 0, 255).astype(np.uint8)
        return np.ascontiguousarray(np.repeat(a[..., None], 3, 2))
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in im.info):
        rgba = np.asarray(im.convert("RGBA")).astype(np.float32)
        a = rgba[..., 3:4] / 255.0
        grey = np.float32(235.0)  # transparent areas become a flat light background
        return (rgba[..., :3] * a + grey * (1 - a) + 0.5).astype(np.uint8)
    if mode == "RGB":
        return np.ascontiguousarray(np.asarray(im))
    if mode.startswith("RGB") and ";16" in mode:
        a = np.asarray(im).astype(np.float64) / 257.0
        return (a + 0.5).astype(np.uint8)
    return np.ascontiguousarray(np.asarray(im.convert("RGB")))


# ----------------------------------------------------------------------------- creation


def _polygon_mask(size: tuple[int, int], pts: np.ndarray) -> np.ndarray:
    m = Image.new("L", size, 0)
    ImageDraw.Draw(m).polygon([(float(x), float(y)) for x, y in pts], fill=255)
    return np.asarray(m)


def _background_model(img: np.ndarray, person: np.ndarray) -> np.ndarray:
    """Clean plate: the person region filled by normalised blurring of the background."""
    bgmask = (person < 128).astype(np.float32)
    out = img.astype(np.float32).copy()
    filled = np.zeros_like(out)
    weight = np.zeros(bgmask.shape, np.float32)
    h, w = bgmask.shape
    # progressively larger blurs fill larger holes; small radii keep background detail
    for radius in (4, 12, 36, 100, 300):
        small = max(1, int(radius // 4))
        sw, sh = max(1, w // small), max(1, h // small)
        m = np.asarray(Image.fromarray((bgmask * 255).astype(np.uint8)).resize((sw, sh), Image.Resampling.BILINEAR)).astype(np.float32) / 255
        c = np.asarray(Image.fromarray(img).resize((sw, sh), Image.Resampling.BILINEAR)).astype(np.float32)
        r = max(1.0, radius / small)
        num = np.stack([_blurf(c[..., k] * m, r) for k in range(3)], -1)
        den = _blurf(m, r)
        est = num / np.maximum(den, 1e-4)[..., None]
        est = np.asarray(Image.fromarray(np.clip(est, 0, 255).astype(np.uint8)).resize((w, h), Image.Resampling.BILINEAR)).astype(np.float32)
        denu = np.asarray(Image.fromarray(np.clip(den * 255, 0, 255).astype(np.uint8)).resize((w, h), Image.Resampling.BILINEAR)).astype(np.float32) / 255
        ok = (denu > 0.05) & (weight == 0) & (bgmask < 0.5)
        filled[ok] = est[ok]
        weight[ok] = 1
    rest = (weight == 0) & (bgmask < 0.5)
    if rest.any():
        filled[rest] = np.median(img[bgmask > 0.5], 0) if (bgmask > 0.5).any() else 128
    out[bgmask < 0.5] = filled[bgmask < 0.5]
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def _blurf(a: np.ndarray, r: float) -> np.ndarray:
    """Gaussian-ish blur of a float image (three box passes, separable, numpy)."""
    k = max(1, int(round(r)))
    out = a.astype(np.float32)
    for axis in (0, 1):
        for _ in range(3):
            pad = [(0, 0), (0, 0)]
            pad[axis] = (k, k)
            p = np.pad(out, pad, mode="edge")
            c = np.cumsum(p, axis=axis, dtype=np.float64)
            c = np.concatenate([np.zeros_like(np.take(c, [0], axis=axis)), c], axis=axis)
            n = out.shape[axis]
            hi = np.take(c, np.arange(2 * k + 1, 2 * k + 1 + n), axis=axis)
            lo = np.take(c, np.arange(0, n), axis=axis)
            out = ((hi - lo) / (2 * k + 1)).astype(np.float32)
    return out


def _person_mask(img: np.ndarray, pts: np.ndarray, fw: float) -> np.ndarray:
    """Soft person mask (uint8, 255 = person): the selfie segmentation model, with a sharper
    pass around the head for the hair, always person on the face oval, and nothing outside
    a generous head-and-torso region (another person or a poster stays background)."""
    from .segmentation import segment_person

    h, w = img.shape[:2]
    cx, cy = float(pts[:468, 0].mean()), float(pts[:468, 1].mean())
    head_box = (cx - 1.3 * fw, cy - 1.6 * fw, cx + 1.3 * fw, cy + 1.2 * fw)
    mask = segment_person(img, head_box, edge_px=max(2.0, fw / 40))
    face = _polygon_mask((w, h), pts[list(L.FACE_OVAL), :2]).astype(np.float32) / 255.0
    mask = np.maximum(mask, _blurf(face, 0.02 * fw) * (face > 0))
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    head = ((xx - cx) / (1.3 * fw)) ** 2 + ((yy - (cy - 0.25 * fw)) / (1.6 * fw)) ** 2 <= 1
    torso = (yy > cy) & (np.abs(xx - cx) < 1.3 * fw + np.clip(yy - cy, 0, None) * 3.0)
    region = np.clip(_blurf((head | torso)[::4, ::4].astype(np.float32), 0.025 * fw) * 2.0, 0.0, 1.0)
    region = np.asarray(Image.fromarray(region, mode="F").resize((w, h), Image.Resampling.BILINEAR))  # smooth: a quarter size will do
    # the guided filter's faint tails to exactly 0 and 1: the background stays background
    mask = np.clip((mask * region - 0.03) / 0.94, 0.0, 1.0)
    return np.clip(mask * 255.0 + 0.5, 0, 255).astype(np.uint8)


def extend_outside(base: np.ndarray, person: np.ndarray, outside: np.ndarray, radius: float) -> np.ndarray:
    """Where a picture was sampled past its edge (``outside``), the sampler repeated the
    edge pixels in streaks: there, blur them into a soft extension, the person and the
    background each from their own pixels (normalised blurs), so a flat background stays
    exactly flat beside a person cut by the photo's edge."""
    # the background from its clean pixels only: those beside the person blend into it
    clear = 1.0 - person
    clear *= _blurf(clear, 3) > 0.98
    soft = []
    for w, r in ((person, 0.5 * radius), (clear, 2.0 * radius)):
        norm = _blurf(w, r)
        ok = norm > 1e-3
        soft.append(np.stack([np.where(ok, _blurf(base[..., k] * w, r) / np.maximum(norm, 1e-3), base[..., k])
                              for k in range(3)], -1))
    # the person's streaks softened, the background smoothed, and the two blended over a
    # short reach of the person's edge: no blocks, and no person colour far out
    near = np.clip(_blurf(person, 0.25 * radius), 0.0, 1.0)[..., None]
    soft = soft[0] * near + soft[1] * (1 - near)
    # feathered outwards only: the picture itself is kept as it is
    ramp = np.clip(2.0 * _blurf(outside.astype(np.float32), 4) - 1.0, 0.0, 1.0)[..., None]
    return base * (1 - ramp) + soft * ramp


def _progress(cb: Progress | None, stage: str, frac: float) -> None:
    if cb is not None:
        cb(stage, frac)


def create_avatar(photo_path: str | os.PathLike, out_dir: str | os.PathLike, progress: Progress | None = None) -> Avatar:
    """Build an avatar package from one portrait photo; writes ``out_dir`` atomically."""
    t0 = time.perf_counter()
    out_dir = Path(out_dir)
    _progress(progress, "reading photo", 0.0)
    img = read_photo(photo_path)
    _progress(progress, "detecting face", 0.2)
    dets, mesh = _find_face(img, progress)
    if not dets:
        raise NoFaceError(f"no face found in {photo_path}")
    if len(dets) > 1:
        log.warning("%d faces found in %s; using the largest", len(dets), photo_path)
    if mesh is None:
        if dets[0].width < MIN_FACE_PX:
            raise FaceTooSmallError(f"the face in {photo_path} is {dets[0].width:.0f} px wide; at least {MIN_FACE_PX} px is needed")
        raise NoFaceError(f"no clear face found in {photo_path}")
    pts = mesh.points
    oval = pts[list(L.FACE_OVAL)]
    fw = float(oval[:, 0].max() - oval[:, 0].min())
    if fw < MIN_FACE_PX * 0.8:
        raise FaceTooSmallError(f"the face in {photo_path} is {fw:.0f} px wide; at least {MIN_FACE_PX} px is needed")
    _progress(progress, "framing", 0.5)
    raw, work_pts, photo_box, outside = _frame_work_image(img, pts, fw)
    _progress(progress, "masks", 0.6)
    wfw = WORK_FACE_WIDTH
    person = _person_mask(np.clip(raw + 0.5, 0, 255).astype(np.uint8), work_pts, wfw)
    if outside.any():  # a flat extension, no invented scenery
        raw = extend_outside(raw, person.astype(np.float32) / 255.0, outside, 0.25 * wfw)
    image = np.ascontiguousarray(np.clip(raw + 0.5, 0, 255).astype(np.uint8))
    size = (image.shape[1], image.shape[0])
    face = _polygon_mask(size, work_pts[list(L.FACE_OVAL), :2])
    mouth = _polygon_mask(size, work_pts[list(L.OUTER_LIPS), :2])
    _progress(progress, "background model", 0.75)
    background = _background_model(image, person)
    _progress(progress, "writing package", 0.9)
    arrays = {"image.png": image, "background.png": background, "person.png": person, "face.png": face,
              "mouth.png": mouth, "landmarks.npy": work_pts.astype(np.float32)}
    _write_package(out_dir, arrays, source=Path(photo_path).name, face_px=round(fw, 2), photo_box=photo_box)
    _progress(progress, "done", 1.0)
    log.info("avatar created in %.2f s", time.perf_counter() - t0)
    return load_avatar(out_dir)


def _find_face(img: np.ndarray, progress: Progress | None) -> tuple[list[L.FaceDetection], L.FaceMesh | None]:
    """The detections, largest first, and the mesh of the largest face the mesh model
    confirms. Where the whole photo shows none, finer tiles are searched: a person
    standing in a wide photo has a face a few percent of its width."""
    dets: list[L.FaceDetection] = []
    for smallest in (None, MIN_FACE_PX):
        dets = L.detect_faces(img, smallest=smallest)
        for det in dets:  # largest first; skip detections the mesh model does not confirm
            if det.width < MIN_FACE_PX:
                break
            _progress(progress, "face mesh", 0.35)
            mesh = L.face_mesh(img, det)
            if mesh.presence >= 0.5:
                return dets, mesh
    return dets, None


def _frame_work_image(img: np.ndarray, pts: np.ndarray, fw: float) -> tuple[np.ndarray, np.ndarray, list[float], np.ndarray]:
    """Crop chest-up around the face and rescale so the face is WORK_FACE_WIDTH px wide:
    the crop (float, edge-replicated past the photo), the landmarks in it, the photo's box
    in it and where it lies outside the photo."""
    s = WORK_FACE_WIDTH / fw
    cx, cy = float(pts[:468, 0].mean()), float(pts[:468, 1].mean())
    ow = int(round((CROP_LEFT + CROP_RIGHT) * WORK_FACE_WIDTH))
    oh = int(round((CROP_UP + CROP_DOWN) * WORK_FACE_WIDTH))
    h, w = img.shape[:2]
    cw, ch = (CROP_LEFT + CROP_RIGHT) * fw, (CROP_UP + CROP_DOWN) * fw
    x0 = cx - CROP_LEFT * fw
    y0 = cy - CROP_UP * fw
    # keep the crop inside the photo where the photo is big enough (less headroom rather
    # than invented pixels); headroom never drops below 0.9 face widths above the centre
    if ch <= h:
        y0 = min(max(y0, 0.0), h - ch)
    else:
        y0 = max(min(y0, 0.0), cy - CROP_UP * fw)
    y0 = min(y0, cy - 0.9 * fw)
    if cw <= w:
        x0 = min(max(x0, 0.0), w - cw)
    # pre-shrink big photos with PIL (area-correct) before the affine sample
    pre = 1.0
    src = img
    if s < 0.5:
        pre = s * 1.5
        src = np.asarray(Image.fromarray(img).resize((max(1, round(w * pre)), max(1, round(h * pre))), Image.Resampling.BOX))
    m = np.array([[1 / s * pre, 0, (x0 + 0.5 / s) * pre - 0.5], [0, 1 / s * pre, (y0 + 0.5 / s) * pre - 0.5]])
    out = L.warp_affine(src, m, (ow, oh))
    # outside the photo: edge-replicated by the sampler, smoothed once the person is known
    ys, xs = np.mgrid[0:oh, 0:ow]
    sx = x0 + (xs + 0.5) / s
    sy = y0 + (ys + 0.5) / s
    outside = (sx < 0) | (sy < 0) | (sx > w) | (sy > h)
    wp = pts.copy()
    wp[:, 0] = (pts[:, 0] - x0) * s
    wp[:, 1] = (pts[:, 1] - y0) * s
    wp[:, 2] = pts[:, 2] * s
    box = [max(0.0, -x0 * s), max(0.0, -y0 * s), min(float(ow), (w - x0) * s), min(float(oh), (h - y0) * s)]
    return out, wp, [round(v, 2) for v in box], outside


def _encode(name: str, arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    if name.endswith(".npy"):
        np.save(buf, arr, allow_pickle=False)
    else:
        Image.fromarray(arr).save(buf, format="PNG", compress_level=4)
    return buf.getvalue()


def _write_package(out_dir: Path, arrays: dict[str, np.ndarray], **meta) -> None:
    files = {name: _encode(name, arr) for name, arr in arrays.items()}
    shapes = {name: {"shape": list(arr.shape)} for name, arr in arrays.items()}
    meta = {"version": PACKAGE_VERSION, "work_face_width": WORK_FACE_WIDTH, **meta}
    write_package(out_dir, files, meta, shapes)


# ----------------------------------------------------------------------------- loading


def _decode_png(name: str, raw: bytes) -> np.ndarray:
    """A package image, or AvatarPackageError: the sizes are checked before decoding."""
    try:
        with Image.open(io.BytesIO(raw)) as im:
            if im.format != "PNG":
                raise AvatarPackageError(f"{name} is not a PNG image")
            if im.size[0] > MAX_SIDE or im.size[1] > MAX_SIDE:
                raise AvatarPackageError(f"{name} is too large ({im.size[0]}x{im.size[1]})")
            return np.asarray(im)
    except AvatarPackageError:
        raise
    except Exception as exc:  # corrupt, truncated or a decompression bomb
        raise AvatarPackageError(f"{name} is not a readable image: {exc}") from exc


def load_avatar(path: str | os.PathLike) -> Avatar:
    root = Path(path)
    manifest = read_manifest(root)
    if manifest.get("kind", "photo") != "photo":
        raise AvatarPackageError(f"{root} is a {manifest.get('kind')!r} package, not a photo avatar")
    version = manifest.get("version")
    if type(version) is not int or version != PACKAGE_VERSION:  # True == 1 is not a version
        raise AvatarPackageError(f"unsupported avatar package version {version!r}; this build reads version {PACKAGE_VERSION}")
    data = read_members(root, manifest, FILES, MAX_ARRAY_BYTES)
    arrays = {}
    for name, raw in data.items():
        if name.endswith(".npy"):
            try:
                arr = np.load(io.BytesIO(raw), allow_pickle=False)
            except Exception as exc:
                raise AvatarPackageError(f"{name} is not a valid array: {exc}") from exc
        else:
            arr = _decode_png(name, raw)
        arrays[name] = arr
    img = arrays["image.png"]
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        raise AvatarPackageError("image.png must be RGB 8-bit")
    hw = img.shape[:2]
    if arrays["background.png"].shape != img.shape:
        raise AvatarPackageError("background.png has the wrong shape")
    for name in ("person.png", "face.png", "mouth.png"):
        if arrays[name].shape != hw or arrays[name].dtype != np.uint8:
            raise AvatarPackageError(f"{name} has the wrong shape")
    lm = arrays["landmarks.npy"]
    if lm.shape != (478, 3) or lm.dtype != np.float32 or not np.all(np.isfinite(lm)):
        raise AvatarPackageError("landmarks.npy must be a finite (478, 3) float32 array")
    if lm[:, 0].min() < 0 or lm[:, 1].min() < 0 or lm[:, 0].max() > hw[1] or lm[:, 1].max() > hw[0]:
        raise AvatarPackageError("landmarks lie outside the image")
    pb = manifest.get("photo_box")
    if pb is not None and (not isinstance(pb, list) or len(pb) != 4
                           or not all(isinstance(v, (int, float)) and 0 <= v <= max(hw) for v in pb)):
        raise AvatarPackageError("photo_box must be 4 numbers inside the image")
    return Avatar(root, img, arrays["background.png"], arrays["person.png"], arrays["face.png"],
                  arrays["mouth.png"], lm, manifest)


def load_package(path: str | os.PathLike):
    """A photo or a footage avatar package, whichever ``path`` holds."""
    from .package import package_kind

    if package_kind(Path(path)) == "footage":
        from .footage import load_footage_avatar

        return load_footage_avatar(path)
    return load_avatar(path)


_DEFAULT: Avatar | None = None


def default_avatar() -> Avatar:
    """The shipped astronaut avatar (models/avatars/default), loaded once per process."""
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = load_avatar(model_path("avatars", "default"))
    return _DEFAULT
