#!/usr/bin/env python3
"""Build models/avatars/default from the public-domain astronaut portrait in scikit-image.

skimage/data/astronaut.png (NASA, Eileen Collins, public domain; 512x512, face ~95 px
wide): create_avatar crops chest-up and upscales the face to the working size.

    python scripts/build_default_avatar.py
"""

import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def main() -> int:
    import skimage.data

    from livekit_avatar_plugin._face.avatar import create_avatar

    img = skimage.data.astronaut()
    with tempfile.TemporaryDirectory() as td:
        p = Path(td) / "astronaut.png"
        Image.fromarray(np.asarray(img)).save(p)
        av = create_avatar(p, REPO / "models" / "avatars" / "default",
                           progress=lambda stage, f: print(f"  {f * 100:3.0f}% {stage}"))
    print("wrote", av.path, av.image.shape)
    return 0


if __name__ == "__main__":
    sys.exit(main())
