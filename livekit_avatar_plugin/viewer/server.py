"""The viewer page and its token endpoint, served on loopback only (aiohttp, ``demo`` extra).

``GET /`` is the page bundled from ``web/``; ``GET /token?room=NAME`` returns
``{"url", "token", "room", "identity"}`` with a fresh viewer identity and a short-lived
least-privilege token (see ``token.py``). The server refuses to bind anything but a
loopback address: the endpoint hands out tokens to whoever asks, which is only acceptable
when "whoever" is this machine.
"""

from __future__ import annotations

import ipaddress
import logging
import uuid
from pathlib import Path

from aiohttp import web
from pydantic import ValidationError

from .._errors import AvatarError
from ..local_server import ServerInfo
from . import STATIC_DIR
from .token import ViewerGrant, mint_viewer_token

logger = logging.getLogger("livekit_avatar_plugin.viewer")


class BundleMissingError(AvatarError, RuntimeError):
    """The page has not been built from ``web/``."""


def _require_loopback(host: str) -> None:
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise ValueError(
            f"viewer server host {host!r} is not a loopback address: it hands out tokens to "
            "anyone who can reach it, so it binds only 127.0.0.0/8 or ::1"
        )


class ViewerServer:
    """Serves the viewer page and ``/token`` for one LiveKit server. ``port=0`` picks a free one."""

    def __init__(
        self,
        livekit: ServerInfo,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        static_dir: Path = STATIC_DIR,
        token_ttl_s: int = 600,
    ) -> None:
        _require_loopback(host)
        if not (static_dir / "index.html").is_file() or not (static_dir / "viewer.js").is_file():
            raise BundleMissingError(
                f"the viewer page is not built ({static_dir} has no index.html/viewer.js): run "
                "scripts/setup.sh, or `npm ci && npm run build` in web/"
            )
        self._livekit = livekit
        self._host = host
        self._port = port
        self._static = static_dir
        self._ttl = token_ttl_s
        self._runner: web.AppRunner | None = None
        self.port: int | None = None

    @property
    def url(self) -> str:
        if self.port is None:
            raise RuntimeError("viewer server is not started")
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{self.port}/"

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._headers])
        app.router.add_get("/", self._index)
        app.router.add_get("/token", self._token)
        app.router.add_static("/", self._static, show_index=False)
        return app

    async def start(self) -> str:
        self._runner = web.AppRunner(self.app(), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host, self._port)
        await site.start()
        self.port = int(self._runner.addresses[0][1])
        logger.info("viewer at %s (LiveKit %s)", self.url, self._livekit.url)
        return self.url

    async def aclose(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def __aenter__(self) -> ViewerServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # -- handlers ------------------------------------------------------------------------

    async def _index(self, request: web.Request) -> web.FileResponse:
        return web.FileResponse(self._static / "index.html")

    async def _token(self, request: web.Request) -> web.Response:
        room = request.query.get("room") or f"demo-{uuid.uuid4().hex[:6]}"
        try:
            grant = ViewerGrant(
                room=room, identity=f"viewer-{uuid.uuid4().hex[:8]}", ttl_s=self._ttl
            )
        except ValidationError as exc:
            return web.json_response({"error": exc.errors()[0]["msg"]}, status=400)
        token = mint_viewer_token(self._livekit.api_key, self._livekit.api_secret, grant)
        return web.json_response(
            {"url": self._livekit.url, "token": token, "room": grant.room, "identity": grant.identity}
        )

    @web.middleware
    async def _headers(self, request: web.Request, handler):
        resp = await handler(request)
        lk_ws = self._livekit.url
        lk_http = self._livekit.http_url
        # Everything the page runs comes from here; it talks only to this LiveKit server.
        resp.headers["Content-Security-Policy"] = (
            "default-src 'self'; "
            f"connect-src 'self' {lk_ws} {lk_http}; "
            "media-src 'self' blob: mediastream:; img-src 'self' data: blob:; "
            "object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
        )
        resp.headers["Cache-Control"] = "no-store"
        return resp
