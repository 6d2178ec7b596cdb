"""Footage avatar packages: the person's own frames, ready to play.

Built by ``footage_build.create_footage_avatar`` from a talking clip, read here. A package
is a folder:

    manifest.json    kind "footage", version, canvas size, fps, A/V offset, parts,
                     calibration, provenance, SHA-256 of every file
    idle.mp4         base loops (H.264, no B-frames, a key frame every KEY_INTERVAL frames),
    listening.mp4    stabilised and cropped to the canvas; a part the clip lacks is left out
    talking.mp4      and the manifest names the loop that stands in for it
    loops.npz        per loop: canonical -> canvas transform of every frame (2x3), ring colour
    atlas.bin        mouth atlas: lower-face crops from nose to below the chin (JPEG, in the
    atlas.npz        canonical space), their offsets, channel keys, measured shapes and poses
    mask.png         the canonical blend mask (alpha) of the crops
    masks.bin        the person mask of every loop frame (greyscale PNGs at half the canvas
                     size; their offsets in loops.npz) and the background behind the person
    plate.png        (RGB, canvas size), for a replaced background; packages built before
                     them load without them and keep their own background

The canonical space is the canvas at the person's average head pose: a frame's transform
maps it onto that frame's head, so a crop from any frame can be put onto any other.
Loading keeps the loops as compressed packets and the crops as JPEG bytes: a session
decodes what it shows, and a 2-minute avatar loads in well under a second.
"""

from __future__ import annotations

import io
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn

import numpy as np
from PIL import Image

from .package import AvatarPackageError, read_manifest, read_members

log = logging.getLogger(__name__)

FOOTAGE_VERSION = 1
LOOP_NAMES = ("idle", "listening", "talking")
CHANNELS = ("jaw_open", "lips_closed", "lip_round", "lip_spread", "labiodental")
# Measured on each crop, in face widths: inner-lip gap, mouth width, lower-lip thickness.
SHAPE_FIELDS = ("gap", "width", "lower_lip")
# the mouth corners and the inner lips' middles: their mean is the mouth's centre
MOUTH_POINTS = (61, 291, 13, 14)
KEY_INTERVAL = 12
MAX_MEMBER_BYTES = 512 << 20
MAX_CANVAS_SIDE = 2048

# Landmarks the jaw and lips never move (eye corners, nose, forehead, cheekbones): the
# head's pose is fitted to these, so a mouth crop follows the head and not the jaw.
STABLE_POINTS = (33, 133, 362, 263, 168, 6, 197, 195, 5, 4, 1, 98, 327, 10, 151, 9, 8, 116, 345)


@dataclass
class Loop:
    """One base loop: compressed frames and, per frame, where the canonical head sits."""

    name: str
    file: str
    packets: list[bytes]
    extradata: bytes | None
    transforms: np.ndarray  # (n, 2, 3) float32: canonical -> canvas
    ring: np.ndarray  # (n, 3) float32: mean colour around the mouth blend, for gain matching
    poses: np.ndarray  # (n, 2) float32: yaw and pitch proxies, as the atlas's
    oval: np.ndarray  # (n, k, 2) float32: the face's lower outline (MouthAtlas.oval_index), canonical
    own_mouth: bool  # False: frames borrowed from talking footage, so the atlas draws the mouth
    mask_offsets: np.ndarray | None = None  # (n + 1,) int64 into FootageAvatar.masks; None: no masks

    @property
    def frames(self) -> int:
        return len(self.packets)


@dataclass
class MouthAtlas:
    """Lower-face crops in the canonical space, keyed by the mouth shape measured on them."""

    jpegs: bytes
    offsets: np.ndarray  # (n + 1,) int64 into jpegs
    keys: np.ndarray  # (n, 5) float32, CHANNELS
    shapes: np.ndarray  # (n, len(SHAPE_FIELDS)) float32
    poses: np.ndarray  # (n, 2) float32: yaw and pitch proxies, in face widths
    follows: np.ndarray  # (n,) bool: crop i is the source frame right after crop i - 1
    ring: np.ndarray  # (n, 3) float32: mean colour under the blend ring
    box: tuple[int, int, int, int]  # x, y, w, h of the crops in canonical pixels
    mask: np.ndarray  # (h, w) uint8 alpha
    oval_index: np.ndarray  # (k,) face-oval landmarks below the nose, cheek round the chin to cheek
    oval: np.ndarray  # (n, k, 2) float32: each crop's own face outline there, canonical
    mouth: np.ndarray  # (n, 2) float32: each crop's mouth centre, canonical

    def __len__(self) -> int:
        return len(self.keys)

    def crop(self, i: int) -> np.ndarray:
        """Crop ``i`` as (h, w, 3) uint8."""
        a, b = int(self.offsets[i]), int(self.offsets[i + 1])
        with Image.open(io.BytesIO(self.jpegs[a:b])) as im:
            return np.asarray(im.convert("RGB"))


@dataclass
class FootageAvatar:
    path: Path
    canvas: tuple[int, int]  # (width, height)
    fps: float
    loops: dict[str, Loop]  # every LOOP_NAMES entry; stand-ins share another loop's frames
    atlas: MouthAtlas
    face_width: float  # canonical face width, canvas pixels
    template: np.ndarray  # (len(STABLE_POINTS), 2) canonical stable points
    manifest: dict = field(default_factory=dict)
    masks: bytes = b""  # person masks of the loop frames (PNG), indexed by Loop.mask_offsets
    plate: np.ndarray | None = None  # (H, W, 3) uint8 background behind the person

    @property
    def has_masks(self) -> bool:
        return self.plate is not None and all(loop.mask_offsets is not None for loop in self.loops.values())

    def person_mask(self, loop: Loop, i: int) -> np.ndarray:
        """Loop frame ``i``'s person mask, (h, w) uint8 at 1 / mask_scale of the canvas."""
        import cv2

        offsets = loop.mask_offsets
        assert offsets is not None, "person_mask needs a package with masks (has_masks)"
        a, b = int(offsets[i]), int(offsets[i + 1])
        m = cv2.imdecode(np.frombuffer(self.masks, np.uint8, b - a, a), cv2.IMREAD_GRAYSCALE)
        if m is None:
            raise AvatarPackageError(f"the person mask of {loop.file} frame {i} is not a readable PNG")
        return m

    @property
    def offset_ms(self) -> float:
        return float(self.manifest.get("av_offset_ms", 0.0))


def _demux(name: str, raw: bytes) -> tuple[list[bytes], bytes | None]:
    """The H.264 packets of a loop file, in decode order, and the codec's extradata."""
    import av

    try:
        with av.open(io.BytesIO(raw), "r", format="mp4") as container:  # "r" (the default) types it an input container
            stream = container.streams.video[0]
            if stream.codec_context.name != "h264":
                raise AvatarPackageError(f"{name} is not H.264")
            extradata = stream.codec_context.extradata
            packets = [bytes(p) for p in container.demux(stream) if p.size]
    except AvatarPackageError:
        raise
    except Exception as exc:
        raise AvatarPackageError(f"{name} is not a readable video: {exc}") from exc
    if not packets:
        raise AvatarPackageError(f"{name} holds no frames")
    return packets, extradata


def _npz(name: str, raw: bytes) -> dict[str, np.ndarray]:
    try:
        with np.load(io.BytesIO(raw), allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except Exception as exc:
        raise AvatarPackageError(f"{name} is not a valid array file: {exc}") from exc


def _fail(what: str) -> NoReturn:
    raise AvatarPackageError(what)


def _check(cond: bool, what: str) -> None:
    if not cond:
        _fail(what)


def _finite(a: np.ndarray, shape: tuple, name: str, dtype=np.float32) -> np.ndarray:
    _check(a.dtype == dtype and a.shape == shape and bool(np.all(np.isfinite(a))),
           f"{name} must be a finite {dtype.__name__} array of shape {shape}, not {a.dtype} {a.shape}")
    return a


def load_footage_avatar(path: str | os.PathLike) -> FootageAvatar:
    """Read and check a footage package; every file's size and checksum are verified."""
    root = Path(path)
    manifest = read_manifest(root)
    _check(manifest.get("kind") == "footage", f"{root} is not a footage avatar package")
    version = manifest.get("version")
    if type(version) is not int or version != FOOTAGE_VERSION:
        raise AvatarPackageError(f"unsupported footage package version {version!r}; this build reads version {FOOTAGE_VERSION}")
    loops_meta = manifest.get("loops")
    if not (isinstance(loops_meta, dict) and set(loops_meta) == set(LOOP_NAMES)):  # an if, not _check: mypy narrows on it
        _fail(f"manifest must describe the loops {LOOP_NAMES}")
    files_of = {}
    for name in LOOP_NAMES:
        entry = loops_meta[name]
        _check(isinstance(entry, dict) and entry.get("file") in tuple(f"{n}.mp4" for n in LOOP_NAMES),
               f"loop {name} must name one of the loop files")
        files_of[name] = entry["file"]
    names = tuple(sorted(set(files_of.values()))) + ("loops.npz", "atlas.bin", "atlas.npz", "mask.png")
    with_masks = all(n in (manifest.get("files") or {}) for n in ("masks.bin", "plate.png"))
    if with_masks:
        names += ("masks.bin", "plate.png")
    data = read_members(root, manifest, names, MAX_MEMBER_BYTES)
    canvas = manifest.get("canvas")
    if not (isinstance(canvas, list) and len(canvas) == 2 and all(type(v) is int and 16 <= v <= MAX_CANVAS_SIDE for v in canvas)):
        _fail("canvas must be [width, height] in pixels")
    fps = manifest.get("fps")
    if not (isinstance(fps, (int, float)) and 1 <= fps <= 60):
        _fail("fps must be a number between 1 and 60")
    fw = manifest.get("face_width")
    if not (isinstance(fw, (int, float)) and 8 <= fw <= max(canvas)):
        _fail("face_width must be a size in canvas pixels")

    arrays = _npz("loops.npz", data["loops.npz"])
    decoded: dict[str, tuple[list[bytes], bytes | None]] = {}
    loops: dict[str, Loop] = {}
    for name in LOOP_NAMES:
        file = files_of[name]
        if file not in decoded:
            decoded[file] = _demux(file, data[file])
        packets, extradata = decoded[file]
        stem = file[:-4]
        tf = arrays.get(f"{stem}_transforms")
        ring = arrays.get(f"{stem}_ring")
        poses = arrays.get(f"{stem}_poses")
        oval = arrays.get(f"{stem}_oval")
        if not (tf is not None and ring is not None and poses is not None and oval is not None):
            _fail(f"loops.npz lacks the arrays of {file}")
        n = len(packets)
        _finite(tf, (n, 2, 3), f"{stem}_transforms")
        _finite(ring, (n, 3), f"{stem}_ring")
        _finite(poses, (n, 2), f"{stem}_poses")
        _finite(oval, (n, *oval.shape[1:]), f"{stem}_oval")
        own = loops_meta[name].get("own_mouth")
        _check(isinstance(own, bool), f"loop {name}: own_mouth must be true or false")
        mask_offsets = None
        if with_masks:
            mask_offsets = arrays.get(f"{stem}_mask_offsets")
            if not (mask_offsets is not None and mask_offsets.dtype == np.int64 and mask_offsets.shape == (n + 1,)
                    and mask_offsets[0] >= 0 and mask_offsets[-1] <= len(data["masks.bin"])
                    and bool(np.all(np.diff(mask_offsets) > 0))):
                _fail(f"loops.npz: {stem}_mask_offsets do not index masks.bin")
        loops[name] = Loop(name, file, packets, extradata, tf, ring, poses, oval, own, mask_offsets)

    a = _npz("atlas.npz", data["atlas.npz"])
    for key in ("offsets", "keys", "shapes", "poses", "follows", "ring", "box", "template", "oval_index", "oval", "mouth"):
        _check(key in a, f"atlas.npz lacks {key}")
    n = len(a["keys"])
    _check(n >= 1, "the mouth atlas is empty")
    offsets = a["offsets"]
    jpegs = data["atlas.bin"]
    _check(offsets.dtype == np.int64 and offsets.shape == (n + 1,) and offsets[0] == 0
           and offsets[-1] == len(jpegs) and bool(np.all(np.diff(offsets) > 0)), "atlas offsets do not index atlas.bin")
    box = a["box"]
    _check(box.dtype == np.int64 and box.shape == (4,) and box[2] > 0 and box[3] > 0
           and box[2] <= MAX_CANVAS_SIDE and box[3] <= MAX_CANVAS_SIDE, "atlas box must be 4 integers")
    oval_index = a["oval_index"]
    _check(oval_index.dtype == np.int64 and oval_index.ndim == 1 and 3 <= len(oval_index) <= 36
           and bool(np.all((oval_index >= 0) & (oval_index < 468))), "atlas oval_index must be face-mesh indices")
    with Image.open(io.BytesIO(data["mask.png"])) as im:
        _check(im.format == "PNG" and im.mode == "L" and im.size == (int(box[2]), int(box[3])),
               "mask.png must be a greyscale PNG the size of the atlas box")
        mask = np.asarray(im)
    atlas = MouthAtlas(
        jpegs=jpegs,
        offsets=offsets,
        keys=_finite(a["keys"], (n, len(CHANNELS)), "atlas keys"),
        shapes=_finite(a["shapes"], (n, len(SHAPE_FIELDS)), "atlas shapes"),
        poses=_finite(a["poses"], (n, 2), "atlas poses"),
        follows=a["follows"].astype(bool) if a["follows"].shape == (n,) else _fail("atlas follows has the wrong shape"),
        ring=_finite(a["ring"], (n, 3), "atlas ring"),
        box=(int(box[0]), int(box[1]), int(box[2]), int(box[3])),
        mask=mask,
        oval_index=oval_index,
        oval=_finite(a["oval"], (n, len(oval_index), 2), "atlas oval"),
        mouth=_finite(a["mouth"], (n, 2), "atlas mouth"),
    )
    for loop in loops.values():
        _check(loop.oval.shape[1:] == (len(oval_index), 2), f"{loop.file}: the face outline has the wrong shape")
    template = _finite(a["template"], (len(STABLE_POINTS), 2), "atlas template")
    plate = None
    if with_masks:
        try:
            with Image.open(io.BytesIO(data["plate.png"])) as im:
                _check(im.format == "PNG" and im.size == (canvas[0], canvas[1]), "plate.png must be a PNG the canvas's size")
                plate = np.asarray(im.convert("RGB"))
        except AvatarPackageError:
            raise
        except Exception as exc:
            raise AvatarPackageError(f"plate.png is not a readable image: {exc}") from exc
    return FootageAvatar(root, (canvas[0], canvas[1]), float(fps), loops, atlas, float(fw), template, manifest,
                         data.get("masks.bin", b""), plate)


# ----------------------------------------------------------------------------- geometry


def fit_similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity transforms (2x3) taking ``src`` (k, 2) onto each of ``dst``
    (n, k, 2); returns (n, 2, 3)."""
    mu_s = src.mean(0)
    mu_d = dst.mean(1)
    sc = src - mu_s
    dc = dst - mu_d[:, None]
    norm = float((sc**2).sum())
    a = (sc[None, :, 0] * dc[..., 0] + sc[None, :, 1] * dc[..., 1]).sum(1) / norm
    b = (sc[None, :, 0] * dc[..., 1] - sc[None, :, 1] * dc[..., 0]).sum(1) / norm
    m = np.empty((len(dst), 2, 3), np.float64)
    m[:, 0, 0], m[:, 0, 1] = a, -b
    m[:, 1, 0], m[:, 1, 1] = b, a
    m[:, :, 2] = mu_d - np.einsum("nij,j->ni", m[:, :, :2], mu_s)
    return m


def invert_affine(m: np.ndarray) -> np.ndarray:
    """Inverse of 2x3 affine transforms (..., 2, 3)."""
    lin = np.linalg.inv(m[..., :2])
    t = -np.einsum("...ij,...j->...i", lin, m[..., 2])
    return np.concatenate([lin, t[..., None]], -1)


def apply_affine(m: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """``m`` (2, 3) applied to points (..., 2)."""
    return pts @ m[:, :2].T + m[:, 2]
