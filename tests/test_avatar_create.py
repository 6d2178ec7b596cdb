"""Avatar creation: input formats, every bad-input case with its exit code, atomic writes."""

import io
import logging
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from livekit_avatar_plugin.cli import main as cli_main
from livekit_avatar_plugin._face import avatar as A

skdata = pytest.importorskip("skimage.data")


@pytest.fixture(scope="module")
def astro() -> np.ndarray:
    return skdata.astronaut()


def _save(tmp: Path, name: str, im: Image.Image, **kw) -> Path:
    p = tmp / name
    im.save(p, **kw)
    return p


def _leftovers(parent: Path) -> list[str]:
    return [p.name for p in parent.iterdir() if p.name.startswith(".")]


def _make_bad(tmp: Path, kind: str, astro: np.ndarray) -> Path:
    if kind == "noface":
        return _save(tmp, "flat.png", Image.new("RGB", (400, 400), (120, 160, 200)))
    if kind == "small":
        return _save(tmp, "small.png", Image.fromarray(astro).resize((256, 256)))
    if kind == "corrupt":
        buf = io.BytesIO()
        Image.fromarray(astro).save(buf, format="PNG")
        p = tmp / "corrupt.png"
        p.write_bytes(buf.getvalue()[:3000])
        return p
    if kind == "notimage":
        p = tmp / "notes.jpg"
        p.write_text("this is not a photo\n" * 20)
        return p
    if kind == "wav":
        import wave

        p = tmp / "speech.wav"
        with wave.open(str(p), "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(16000)
            w.writeframes(bytes(3200))
        return p
    if kind == "huge":
        return _save(tmp, "huge.png", Image.new("1", (8000, 5100), 0))
    raise AssertionError(kind)


CASES = [("noface", A.NoFaceError, 11), ("small", A.FaceTooSmallError, 12), ("corrupt", A.CorruptImageError, 13),
         ("notimage", A.NotAnImageError, 14), ("wav", A.NotAnImageError, 14), ("huge", A.ImageTooLargeError, 15)]


@pytest.mark.parametrize("kind,exc,code", CASES)
def test_bad_inputs_api(tmp_path, astro, kind, exc, code):
    photo = _make_bad(tmp_path, kind, astro)
    out = tmp_path / "pkg" / "avatar"
    with pytest.raises(exc) as info:
        A.create_avatar(photo, out)
    assert isinstance(info.value, A.AvatarCreationError)
    assert info.value.exit_code == code
    assert not out.exists()
    assert not (tmp_path / "pkg").exists() or not list((tmp_path / "pkg").iterdir())


@pytest.mark.parametrize("kind,exc,code", CASES)
def test_bad_inputs_cli(tmp_path, astro, kind, exc, code):
    photo = _make_bad(tmp_path, kind, astro)
    out = tmp_path / "avatar"
    assert cli_main(["create", str(photo), "-o", str(out), "-q"]) == code
    assert not out.exists()
    assert _leftovers(tmp_path) == []


def test_exit_codes_distinct():
    codes = [c.exit_code for c in (A.AvatarCreationError, A.NoFaceError, A.FaceTooSmallError, A.CorruptImageError,
                                   A.NotAnImageError, A.ImageTooLargeError)]
    assert len(set(codes)) == len(codes)


def test_create_ok_and_reload(tmp_path, astro):
    photo = _save(tmp_path, "a.jpg", Image.fromarray(astro), quality=95)
    stages = []
    av = A.create_avatar(photo, tmp_path / "av", progress=lambda s, f: stages.append(f))
    assert stages[0] == 0.0 and stages[-1] == 1.0 and stages == sorted(stages)
    again = A.load_avatar(tmp_path / "av")
    assert again.image.shape == av.image.shape and abs(av.face_width - A.WORK_FACE_WIDTH) < 3
    assert _leftovers(tmp_path) == []
    # overwrite in place is atomic too
    A.create_avatar(photo, tmp_path / "av")
    assert _leftovers(tmp_path) == []


def _mouth_centre(av) -> np.ndarray:
    return av.landmarks[[13, 14], :2].mean(0) / av.face_width


@pytest.mark.parametrize("mode", ["RGBA", "L", "CMYK", "I;16", "exif"])
def test_input_modes(tmp_path, astro, mode):
    im = Image.fromarray(astro)
    if mode == "RGBA":
        im = im.convert("RGBA")
        a = np.asarray(im).copy()
        a[:, :40, 3] = 0
        p = _save(tmp_path, "x.png", Image.fromarray(a))
    elif mode == "L":
        p = _save(tmp_path, "x.png", im.convert("L"))
    elif mode == "CMYK":
        p = _save(tmp_path, "x.jpg", im.convert("CMYK"), quality=95)
    elif mode == "I;16":
        g = (np.asarray(im.convert("L")).astype(np.uint16) * 257)
        p = _save(tmp_path, "x.png", Image.fromarray(g))
        assert Image.open(p).mode.startswith("I")
    else:  # stored rotated, EXIF says rotate back (orientation 6: rotate 90 CW to view)
        rot = im.transpose(Image.Transpose.ROTATE_90)
        exif = Image.Exif()
        exif[0x0112] = 6
        p = _save(tmp_path, "x.jpg", rot, quality=95, exif=exif.tobytes())
    rgb = A.read_photo(p)
    assert rgb.dtype == np.uint8 and rgb.ndim == 3 and rgb.shape[2] == 3
    assert rgb.shape[:2] == (512, 512)
    av = A.create_avatar(p, tmp_path / "av")
    # the face is upright: eyes above the mouth, both eyes side by side
    lm = av.landmarks
    assert lm[159, 1] < lm[13, 1] and lm[386, 1] < lm[13, 1]
    assert abs(lm[159, 1] - lm[386, 1]) < 0.15 * av.face_width


def test_several_faces_picks_largest(tmp_path, astro, caplog):
    big = Image.fromarray(astro)
    small = big.resize((380, 380))
    canvas = Image.new("RGB", (1000, 520), tuple(int(v) for v in astro[5, 5]))
    canvas.paste(big, (0, 0))
    canvas.paste(small.crop((60, 0, 300, 380)), (700, 60))
    p = _save(tmp_path, "two.png", canvas)
    from livekit_avatar_plugin._face import landmarks as L

    dets = L.detect_faces(np.asarray(canvas))
    if len(dets) < 2:
        pytest.skip("detector did not find both faces in the synthetic group photo")
    with caplog.at_level(logging.WARNING):
        av = A.create_avatar(p, tmp_path / "av")
    assert "faces found" in caplog.text
    assert av.manifest["face_px"] > 85  # the 95 px face, not the 70 px one
