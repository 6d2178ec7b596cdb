"""The mouth's contact sheet for the docs: closed, "a", "ee", "oo" and "f/v" (each held as the
lip-sync model's phone targets hold it) for the default avatar and for an avatar made from
a landscape photo with the face right of centre (the public-domain astronaut pasted into a
1920x1080 grey wall, as tests/test_framing.py makes it). Per avatar: the head, then the
mouth at 3x with nearest-neighbour zoom, so rims and staircases show as they are.

    .venv/bin/python scripts/mouth_pictures.py   # docs/img/face_contact_sheet.png
"""

import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
import numpy as np  # noqa: E402
from PIL import Image, ImageDraw, ImageFont  # noqa: E402

import test_framing as T  # noqa: E402
from livekit_avatar_plugin._face.avatar import create_avatar, default_avatar  # noqa: E402
from livekit_avatar_plugin._render.renderer import FaceRenderer  # noqa: E402
from livekit_avatar_plugin._state import ConversationState  # noqa: E402
from livekit_avatar_plugin.training.phonemes import CHANNELS, PHONES  # noqa: E402

OUT = ROOT / "docs" / "img" / "face_contact_sheet.png"
SHAPES = (("at rest (the photo)", None), ("closed /m/", "m"), ('"a" /aa/', "aa"), ('"ee" /iy/', "iy"),
          ('"oo" /uw/', "uw"), ('"f/v" /f/', "f"))  # fmt: skip
TILE, ZOOM = 240, 3


def _frames(avatar) -> list[tuple[np.ndarray, FaceRenderer]]:
    out = []
    for _, phone in SHAPES:
        r = FaceRenderer(avatar, 512, 512, seed=1)
        if phone is None:
            f = r.render({}, ConversationState.IDLE, 0.0)
        else:
            mouth = dict(zip(CHANNELS, PHONES[phone].start))
            for i in range(12):  # held long enough for the 25 ms smoothing to settle
                f = r.render(mouth, ConversationState.SPEAKING, i / 25.0, 0.5)
        out.append((np.array(f, copy=True), r))
    return out


def _row(name: str, avatar, font) -> Image.Image:
    shots = _frames(avatar)
    r = shots[0][1]
    cx, cy = r.pts[:468, 0].mean(), r.pts[:468, 1].mean()
    half = 0.85 * r.fw
    head_box = tuple(int(v) for v in (cx - half, cy - 1.1 * half, cx + half, cy + 0.9 * half))
    mx, my = r.pts[[61, 291], :2].mean(0)
    mw, mh = TILE / ZOOM, 0.5 * TILE / ZOOM
    mouth_box = tuple(int(round(v)) for v in (mx - mw / 2, my - mh / 2 + 0.03 * r.fw, mx + mw / 2, my + mh / 2 + 0.03 * r.fw))
    zoom_h = int(TILE * 0.5)
    row = Image.new("RGB", (TILE * len(SHAPES), 44 + TILE + zoom_h + 4), "white")
    draw = ImageDraw.Draw(row)
    draw.text((6, 2), name, fill="black", font=font)
    for i, ((label, _), (frame, _)) in enumerate(zip(SHAPES, shots)):
        img = Image.fromarray(frame)
        row.paste(img.crop(head_box).resize((TILE, TILE), Image.LANCZOS), (i * TILE, 44))
        zoom = img.crop(mouth_box).resize((TILE, zoom_h), Image.NEAREST)
        row.paste(zoom, (i * TILE, 44 + TILE + 4))
        draw.text((i * TILE + 6, 24), label, fill="gray", font=font)
    return row


def main() -> None:
    font = ImageFont.load_default(size=14)
    with tempfile.TemporaryDirectory() as tmp:
        key = "landscape, right of centre"
        canvas, at, face = T.PHOTOS[key]
        photo = T._photo(Path(tmp), key, canvas, at, face)
        landscape = create_avatar(photo, Path(tmp) / "avatar")
        rows = [_row("default avatar, 512x512", default_avatar(), font),
                _row("landscape photo, 512x512", landscape, font)]  # fmt: skip
    title_h = 30
    sheet = Image.new("RGB", (rows[0].width, title_h + sum(r.height + 10 for r in rows)), "white")
    ImageDraw.Draw(sheet).text((6, 8), "Photo avatar mouth shapes (phone targets held; lower strip: the mouth at 3x, "
                               "nearest-neighbour)", fill="black", font=font)  # fmt: skip
    y = title_h
    for r in rows:
        sheet.paste(r, (0, y))
        y += r.height + 10
    OUT.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(OUT, optimize=True)
    print(f"wrote {OUT} ({OUT.stat().st_size // 1024} KB)")


if __name__ == "__main__":
    main()
