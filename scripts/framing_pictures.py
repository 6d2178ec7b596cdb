"""The framing before/after strip for the docs: photos of the public-domain astronaut placed
where a head-and-shoulders crop is hard (near a corner; cut below the chin), rendered at
512x512 and in portrait by the renderer before the framing change (taken from git) and
by the current one.

    .venv/bin/python scripts/framing_pictures.py   # docs/img/framing_before_after.png
"""

import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
BEFORE = "8bceca90aadec00cdbcdf6018c9aaedc991ba554"  # the last commit with the old framing
from PIL import Image, ImageDraw, ImageFont  # noqa: E402

import test_framing as T  # noqa: E402
from git_versions import module_at  # noqa: E402
from livekit_avatar_plugin._face.avatar import create_avatar  # noqa: E402
from livekit_avatar_plugin._render.renderer import FaceRenderer  # noqa: E402
from livekit_avatar_plugin._state import ConversationState  # noqa: E402

CASES = ("face near the top right corner", "cut at the chin's level below")
NAMES = ("the photo", "before, 512x512", "before, portrait", "after, 512x512", "after, portrait")


def _row(tmp: Path, key: str, renderers: tuple, font) -> Image.Image:
    canvas, at, face = T.PHOTOS[key]
    photo = T._photo(tmp, key, canvas, at, face)
    avatar = create_avatar(photo, tmp / f"avatar_{abs(hash(key))}")
    src = Image.open(photo)
    src.thumbnail((400, 400))
    tiles = [src]
    for renderer in renderers:
        for w, h in ((512, 512), (720, 1280)):
            frame = Image.fromarray(renderer(avatar, w, h).render({}, ConversationState.IDLE, 0.0))
            frame.thumbnail((400, 400))
            tiles.append(frame)
    row = Image.new("RGB", (sum(t.width + 20 for t in tiles), 430), "white")
    draw = ImageDraw.Draw(row)
    x = 0
    for tile, name in zip(tiles, NAMES):
        row.paste(tile, (x, 28))
        draw.text((x + 4, 4), name, fill="black", font=font)
        x += tile.width + 20
    return row


def main() -> None:
    tmp = Path(tempfile.mkdtemp())
    renderers = (module_at(BEFORE).FaceRenderer, FaceRenderer)
    font = ImageFont.load_default(size=18)
    rows = [_row(tmp, key, renderers, font) for key in CASES]
    sheet = Image.new("RGB", (max(r.width for r in rows), sum(r.height for r in rows)), "white")
    y = 0
    for row in rows:
        sheet.paste(row, (0, y))
        y += row.height
    out = ROOT / "docs" / "img" / "framing_before_after.png"
    sheet.save(out, optimize=True)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
