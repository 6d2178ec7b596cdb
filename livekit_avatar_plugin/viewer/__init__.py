"""The demo's browser viewer: a bundled page, a loopback-only server for it and its tokens.

``token`` mints a viewer's least-privilege token (no extra dependencies). ``server`` serves
the page built from ``web/`` (bundled into ``static/`` by ``scripts/setup.sh``) and
``/token``; it needs aiohttp, from the ``demo`` extra, and is imported only when used.
``demo`` runs the whole local demo: LiveKit server, example agent worker and this viewer.
"""

from __future__ import annotations

from pathlib import Path

from .token import ViewerGrant, mint_viewer_token

STATIC_DIR = Path(__file__).resolve().parent / "static"

__all__ = ["STATIC_DIR", "ViewerGrant", "mint_viewer_token"]
