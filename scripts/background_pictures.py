"""The background option's picture for the docs: the default photo avatar (the public-domain
astronaut) rendered at 512x512 with its own background, a colour and an image, and below
each a 4x zoom of the hair's edge; the last column zooms the same edge blended naively
(the photo's pixels as they are, over the colour) to show the rim that decontamination
removes.

    .venv/bin/python scripts/background_pictures.py   # docs/img/background_keys.png
"""

import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from PIL import Image, ImageDraw, ImageFilter, ImageFont  # noqa: E402

from livekit_avatar_plugin._face.avatar import default_avatar  # noqa: E402
from livekit_avatar_plugin._render.background import BackgroundRenderer  # noqa: E402
from livekit_avatar_plugin._render.renderer import FaceRenderer  # noqa: E402
from livekit_avatar_plugin._state import ConversationState  # noqa: E402

OUT = ROOT / "docs" / "img" / "background_keys.png"
COLOUR = (24, 36, 110)
TILE = 384
ZOOM = 4


def _scenery(path: Path) -> None:
    """A made-up backdrop: a blurred window-light gradient with soft bokeh discs."""
    w, h = 1024, 768
    yy, xx = np.mgrid[0:h, 0:w] / np.array([h, w])[:, None, None]
    img = np.stack([200 - 90 * yy + 30 * xx, 180 - 60 * yy + 10 * xx, 140 + 40 * xx - 30 * yy], -1)
    pic = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(pic)
    rng = np.random.default_rng(4)
    for _ in range(40):
        x, y, r = rng.uniform(0, w), rng.uniform(0, h * 0.7), rng.uniform(15, 60)
        c = tuple(int(v) for v in rng.uniform(150, 255, 3))
        draw.ellipse((x - r, y - r, x + r, y + r), fill=c)
    pic.filter(ImageFilter.GaussianBlur(14)).save(path)


def _hair_box(r: FaceRenderer) -> tuple[int, int, int, int]:
    """A square on the hair's outline above the left temple, in output pixels."""
    side = TILE // ZOOM
    m = r.person > 127
    x = int(r.pts[103, 0])  # the forehead's left side
    col = np.flatnonzero(m[:, x])
    y = int(col[0]) if col.size else int(r.pts[10, 1])
    return x - side // 2, y - side // 2, x + side // 2, y + side // 2


def main() -> int:
    av = default_avatar()
    with tempfile.TemporaryDirectory() as td:
        scenery = Path(td) / "scenery.png"
        _scenery(scenery)
        keep = FaceRenderer(av, 512, 512)
        frames = {"keep (the photo's own)": keep.render({}, ConversationState.IDLE, 0.0).copy()}
        for name, bg in ((f"colour {COLOUR}", COLOUR), ("image file", str(scenery))):
            r = BackgroundRenderer(FaceRenderer(av, 512, 512), bg)
            frames[name] = r.render({}, ConversationState.IDLE, 0.0).copy()
    # the same edge blended naively: the photo's pixels over the colour by the mask
    a = keep.person[..., None].astype(np.float32) / 255.0
    naive = np.clip(keep.base * a + np.array(COLOUR, np.float32) * (1 - a) + 0.5, 0, 255).astype(np.uint8)
    x0, y0, x1, y1 = _hair_box(keep)
    font = ImageFont.load_default()
    cols = len(frames) + 1
    sheet = Image.new("RGB", (cols * TILE, 2 * TILE + 48), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    for k, (name, f) in enumerate(list(frames.items()) + [("colour, naive blend (a rim)", naive)]):
        tile = Image.fromarray(f).resize((TILE, TILE), Image.LANCZOS)
        ImageDraw.Draw(tile).rectangle([v * TILE / 512 for v in (x0, y0, x1, y1)], outline=(255, 60, 60), width=2)
        sheet.paste(tile, (k * TILE, 24))
        zoom = Image.fromarray(np.ascontiguousarray(f[y0:y1, x0:x1])).resize((TILE, TILE), Image.NEAREST)
        sheet.paste(zoom, (k * TILE, TILE + 48))
        draw.text((k * TILE + 6, 6), name, fill=(0, 0, 0), font=font)
        draw.text((k * TILE + 6, TILE + 30), f"{ZOOM}x, hair edge", fill=(0, 0, 0), font=font)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(OUT, optimize=True)
    print("wrote", OUT, sheet.size)
    return 0


if __name__ == "__main__":
    sys.exit(main())
