"""Photo avatars are framed head-and-shoulders in every output size, whatever the photo:
landscape, portrait, a face off-centre, small in a large photo, or near an edge."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage import data as skdata

from livekit_avatar_plugin._face import landmarks as L
from livekit_avatar_plugin._face.avatar import create_avatar, default_avatar
from livekit_avatar_plugin._face.tracking import FaceTracker, face_width
from livekit_avatar_plugin._render.renderer import FaceRenderer
from livekit_avatar_plugin._state import ConversationState

SIZES = [(512, 512), (854, 480), (1280, 720), (720, 1280), (320, 240)]
# the astronaut photo's face: centre and width in its 512x512 pixels
FACE_XY, FACE_W = (224.0, 124.0), 92.0

# canvas size, where the face centre lands, the face width there
PHOTOS = {
    "landscape, right of centre": ((1920, 1080), (1400, 380), 160),
    "small face in a large photo": ((3000, 2000), (700, 600), 120),
    "face near the top right corner": ((1920, 1080), (1830, 130), 150),
    "portrait photo": ((1080, 1920), (540, 520), 260),
    "cut at the chin's level below": ((1600, 900), (800, 760), 200),
}


def _photo(tmp: Path, name: str, canvas: tuple[int, int], at: tuple[int, int], face: int) -> Path:
    """The astronaut pasted into a larger photo (a flat grey wall), scaled and placed."""
    s = face / FACE_W
    astro = Image.fromarray(skdata.astronaut()).resize((round(512 * s), round(512 * s)), Image.LANCZOS)
    photo = Image.new("RGB", canvas, (128, 128, 128))
    photo.paste(astro, (round(at[0] - FACE_XY[0] * s), round(at[1] - FACE_XY[1] * s)))
    path = tmp / f"{name.replace(' ', '_').replace(',', '')}.jpg"
    photo.save(path, quality=92)
    return path


@pytest.fixture(scope="module")
def avatars(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("framing")
    made = {"default avatar": default_avatar()}
    for name, (canvas, at, face) in PHOTOS.items():
        made[name] = create_avatar(_photo(tmp, name, canvas, at, face), tmp / f"av{len(made)}")
    return made


@pytest.mark.parametrize("size", SIZES, ids=[f"{w}x{h}" for w, h in SIZES])
@pytest.mark.parametrize("name", ["default avatar", *PHOTOS])
def test_head_and_shoulders_in_every_size(avatars, name, size):
    w, h = size
    r = FaceRenderer(avatars[name], w, h)
    frame = r.render({}, ConversationState.IDLE, 0.0)
    face = FaceTracker().update(frame)
    assert face is not None, f"{name}: no face at {w}x{h}"
    pts = face.points[:, :2]
    share = face_width(face.points) / min(w, h)
    eyes = pts[[33, 263], 1].mean() / h
    assert 0.28 <= share <= 0.44, f"{name} at {w}x{h}: face {share:.2f} of the shorter side"
    assert 0.35 <= eyes <= 0.45, f"{name} at {w}x{h}: eyes at {eyes:.2f} of the height"
    assert abs(pts[:, 0].mean() / w - 0.5) < 0.06, f"{name} at {w}x{h}: face off-centre"
    # never cut: the whole face, and room above it for the hair
    assert pts[:, 0].min() > 0 and pts[:, 0].max() < w and pts[:, 1].max() < h
    assert pts[:, 1].min() > 0.1 * h


def test_a_small_face_in_a_wide_photo_is_found(tmp_path):
    """A person standing in a 1920x1080 photo: a face 90 px wide, 5 % of the width."""
    img = np.asarray(Image.open(_photo(tmp_path, "small", (1920, 1080), (300, 260), 90)))
    assert img.shape == (1080, 1920, 3)
    found = L.detect_faces(img, smallest=80)
    assert any(abs((d.box[0] + d.box[2]) / 2 - 300) < 30 and abs((d.box[1] + d.box[3]) / 2 - 270) < 40 for d in found)
    av = create_avatar(tmp_path / "small.jpg", tmp_path / "avatar")
    assert abs(av.face_width - 200) < 20  # the working image's face width


def test_beyond_the_photo_the_background_is_extended_not_streaked(avatars):
    """The corner photo's head touches the photo's top and right edges: the output shows
    a soft extension there, with no hard streaks across it."""
    r = FaceRenderer(avatars["face near the top right corner"], 512, 512)
    frame = r.render({}, ConversationState.IDLE, 0.0).astype(np.float32)
    # right of the face, beyond the photo: no column-to-column jumps
    right = frame[: 200, 440:]
    assert np.abs(np.diff(right, axis=0)).mean() < 2.0


def _busy(h: int, w: int, kind: str) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    if kind == "stripes":
        return np.where((((xx + yy) // 10) % 2 == 0)[..., None], np.array([235, 205, 40], np.uint8),
                        np.array([25, 55, 150], np.uint8)).astype(np.uint8)
    blocks = np.random.default_rng(1).integers(0, 256, (h // 5 + 1, w // 5 + 1, 3), dtype=np.uint8)
    return np.asarray(Image.fromarray(blocks).resize((w, h), Image.NEAREST))


@pytest.mark.parametrize("kind", ["stripes", "noise"])
def test_a_busy_background_stays_still_while_the_head_moves(tmp_path, kind):
    """The default avatar's person pasted onto stripes or noise (the truth of where the
    person is, by construction): while it speaks and the head nods and turns, every
    background pixel more than 14 px (0.075 face widths) from the person keeps its value
    (the model's outline strays up to ~12 px from the truth on block noise)."""
    src = default_avatar()
    h, w = src.image.shape[:2]
    soft = src.person.astype(np.float32)[..., None] / 255.0
    photo = np.clip(src.image * soft + _busy(h, w, kind) * (1 - soft) + 0.5, 0, 255).astype(np.uint8)
    Image.fromarray(photo).save(tmp_path / "busy.png")
    av = create_avatar(tmp_path / "busy.png", tmp_path / "avatar")
    r = FaceRenderer(av, 512, 512, seed=3)
    # the photo's pixels in the output: photo -> package image (landmarks) -> output (framing)
    a = np.c_[src.landmarks[:468, :2], np.ones(468)]
    k = np.linalg.lstsq(a, av.landmarks[:468, :2], rcond=None)[0].T  # 2x3, photo -> package
    to_out = np.array([[r.scale, 0, r.ox], [0, r.scale, r.oy]]) @ np.vstack([k, [0, 0, 1]])
    inv = np.linalg.inv(np.vstack([to_out, [0, 0, 1]]))[:2]
    inv[:, 2] += inv[:, :2].sum(1) * 0.5 - 0.5  # pixel centres
    truth = L.warp_affine(src.person[..., None], inv, (512, 512))[..., 0] > 8
    near = truth.copy()
    for _ in range(14):
        near |= np.roll(near, 1, 0) | np.roll(near, -1, 0) | np.roll(near, 1, 1) | np.roll(near, -1, 1)
    far = ~near
    x0, y0, x1, y1 = r.roi
    in_roi = np.zeros_like(far)
    in_roi[y0:y1, x0:x1] = True
    assert (far & in_roi).sum() > 5000  # plenty of busy background beside the moving head
    first = r.render({"jaw_open": 0.0}, ConversationState.SPEAKING, 0.0, 0.8).astype(np.int16)
    worst, moved = 0, 0.0
    for i in range(1, 150):
        jaw = 0.5 + 0.5 * np.sin(i / 3.0)
        f = r.render({"jaw_open": jaw}, ConversationState.SPEAKING, i / 25, 0.8).astype(np.int16)
        worst = max(worst, int(np.abs(f[far] - first[far]).max()))
        moved = max(moved, float(np.abs(f[truth & in_roi] - first[truth & in_roi]).mean()))
    assert moved > 2.0, "the head did not move"
    assert worst <= 2, f"background beside the person changed by {worst} levels"
