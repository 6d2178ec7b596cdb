"""The person mask of photo avatars comes from the converted selfie segmentation model:
the same person, pasted onto flat, striped, noisy and photographic backgrounds, is found
again with the same outline."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from livekit_avatar_plugin._face import segmentation as seg
from livekit_avatar_plugin._face.avatar import default_avatar
from livekit_avatar_plugin._face.photo_background import person_mask


def _backgrounds(h: int, w: int) -> dict[str, np.ndarray]:
    yy, xx = np.mgrid[0:h, 0:w]
    rng = np.random.default_rng(0)
    stripes = np.where((((xx + yy) // 12) % 2 == 0)[..., None], np.array([230, 200, 40], np.uint8),
                       np.array([30, 60, 150], np.uint8)).astype(np.uint8)
    blocks = rng.integers(0, 256, (h // 6 + 1, w // 6 + 1, 3), dtype=np.uint8)
    noise = np.asarray(Image.fromarray(blocks).resize((w, h), Image.NEAREST))
    out = {"flat": np.broadcast_to(np.array([70, 130, 180], np.uint8), (h, w, 3)), "stripes": stripes,
           "noise": noise}
    skdata = pytest.importorskip("skimage.data")
    out["photo"] = np.asarray(Image.fromarray(skdata.coffee()).resize((w, h)))  # wood and a red cup
    return out


@pytest.fixture(scope="module")
def person():
    """The default avatar's working image and its person (the truth for the composites)."""
    av = default_avatar()
    return av, av.person.astype(np.float32)[..., None] / 255.0


@pytest.mark.parametrize("name", ["flat", "stripes", "noise", "photo"])
def test_the_person_is_found_on_any_background(person, name):
    av, soft = person
    h, w = av.image.shape[:2]
    truth = soft[..., 0] > 0.5
    bg = _backgrounds(h, w)[name]
    photo = np.clip(av.image * soft + bg * (1 - soft) + 0.5, 0, 255).astype(np.uint8)
    found = person_mask(photo, av.landmarks, av.face_width) > 127
    iou = (found & truth).sum() / (found | truth).sum()
    assert iou >= (0.97 if name != "photo" else 0.95), f"{name}: IoU {iou:.3f}"
    # the face is always person, and far from the person nothing is
    far = ~_dilate(truth, 25)
    assert found[av.face > 127].all()
    assert found[far].mean() < 0.002, f"{name}: {found[far].mean():.4f} of the far background taken"


def _dilate(m: np.ndarray, r: int) -> np.ndarray:
    import cv2

    return cv2.dilate(m.astype(np.uint8), cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))) > 0


def test_mask_is_soft_only_at_the_edge(person):
    """Solid inside, zero outside, a few pixels of soft values along the outline (hair)."""
    av, soft = person
    m = av.person
    soft_px = ((m > 0) & (m < 255)).sum()
    outline = (_dilate(m > 127, 3) & ~(m > 127)).sum()
    assert 0 < soft_px < 12 * outline


def test_the_session_is_loaded_once():
    assert seg._get_session() is seg._get_session()


def test_the_model_output_is_a_probability():
    img = np.zeros((300, 200, 3), np.uint8)
    p = seg.run_model(img)
    assert p.shape == (seg.SIZE, seg.SIZE) and p.dtype == np.float32
    assert 0.0 <= p.min() and p.max() <= 1.0
    assert p.mean() < 0.1  # a black picture shows nobody


def test_guided_filter_follows_the_guide_edge():
    """A blurry mask over a sharp edge in the guide comes out sharp at that edge."""
    guide = np.zeros((64, 64, 3), np.float32)
    guide[:, 32:] = 1.0
    blurry = np.clip((np.arange(64, dtype=np.float32) - 24) / 16, 0, 1)[None].repeat(64, 0)
    out = seg.guided_filter(guide, blurry, 4, 1e-4)
    assert out[:, 26].mean() < 0.2 and out[:, 37].mean() > 0.8
