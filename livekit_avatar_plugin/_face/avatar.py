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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

from livekit_avatar_plugin._paths import model_path

from . import landmarks as L
from .creation_errors import (  # re-exported: they are create_avatar's errors
    AvatarCreationError as AvatarCreationError,
    NoFaceError as NoFaceError,
    FaceTooSmallError as FaceTooSmallError,
    CorruptImageError as CorruptImageError,
    NotAnImageError as NotAnImageError,
    ImageTooLargeError as ImageTooLargeError,
    CorruptVideoError as CorruptVideoError,
    VideoTooLargeError as VideoTooLargeError,
    VideoTooLongError as VideoTooLongError,
    VideoTooShortError as VideoTooShortError,
    StillVideoError as StillVideoError,
    PartRangeError as PartRangeError,
)
from .package import AvatarPackageError, read_manifest, read_members, write_package
from .photo_background import background_model, extend_outside, person_mask, polygon_mask
from .photo_file import read_photo

log = logging.getLogger(__name__)

PACKAGE_VERSION = 1
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


# ----------------------------------------------------------------------------- creation


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
    person = person_mask(np.clip(raw + 0.5, 0, 255).astype(np.uint8), work_pts, wfw)
    if outside.any():  # a flat extension, no invented scenery
        raw = extend_outside(raw, person.astype(np.float32) / 255.0, outside, 0.25 * wfw)
    image = np.ascontiguousarray(np.clip(raw + 0.5, 0, 255).astype(np.uint8))
    size = (image.shape[1], image.shape[0])
    face = polygon_mask(size, work_pts[list(L.FACE_OVAL), :2])
    mouth = polygon_mask(size, work_pts[list(L.OUTER_LIPS), :2])
    _progress(progress, "background model", 0.75)
    background = background_model(image, person)
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
