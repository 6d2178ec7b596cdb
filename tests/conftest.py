"""Shared fixtures. ``livekit_server`` is a real LiveKit server on loopback."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from livekit_avatar_plugin.local_server import LocalLiveKitServer, ServerInfo


@pytest.fixture(scope="session")
def livekit_server() -> Iterator[ServerInfo]:
    """``LIVEKIT_URL`` + key/secret if given, else a ``livekit-server --dev`` we start.

    Never skips: a test that needs the server fails loudly when there is none.
    """
    url = os.environ.get("LIVEKIT_URL")
    key = os.environ.get("LIVEKIT_API_KEY")
    secret = os.environ.get("LIVEKIT_API_SECRET")
    if url and key and secret:
        yield ServerInfo(url=url, api_key=key, api_secret=secret)
        return
    log = Path(tempfile.gettempdir()) / "livekit-avatar-test-server.log"
    server = LocalLiveKitServer(log_path=log)
    info = server.start()
    try:
        yield info
    finally:
        server.stop()
