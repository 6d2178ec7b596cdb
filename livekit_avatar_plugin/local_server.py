"""A real LiveKit server on loopback, for local development, the demo and the tests.

The server is not on PyPI; it is a Go module. ``find_server_binary`` honours, in order:
``LIVEKIT_SERVER_BIN``, a ``livekit-server`` on PATH, a cached build, and finally builds
the pinned release with ``go install`` and caches it, so a second run skips the build.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger("livekit_avatar_plugin.local_server")

LIVEKIT_SERVER_VERSION = "v1.13.5"
_GO_PACKAGE = "github.com/livekit/livekit-server/cmd/server"
DEV_API_KEY = "devkey"
DEV_API_SECRET = "secret"


class ServerUnavailableError(RuntimeError):
    """No LiveKit server binary could be found or built."""


def cache_dir() -> Path:
    root = os.environ.get("LIVEKIT_AVATAR_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "livekit-avatar"
    )
    return Path(root)


def _cached_binary() -> Path:
    return cache_dir() / "bin" / f"livekit-server-{LIVEKIT_SERVER_VERSION}"


def find_server_binary(*, build: bool = True) -> Path:
    """Locate (or build once) the ``livekit-server`` binary."""
    explicit = os.environ.get("LIVEKIT_SERVER_BIN")
    if explicit:
        path = Path(explicit)
        if not os.access(path, os.X_OK):
            raise ServerUnavailableError(f"LIVEKIT_SERVER_BIN={explicit} is not an executable file")
        return path
    on_path = shutil.which("livekit-server")
    if on_path:
        return Path(on_path)
    cached = _cached_binary()
    if os.access(cached, os.X_OK):
        return cached
    if not build:
        raise ServerUnavailableError(
            "no livekit-server found: put one on PATH, set LIVEKIT_SERVER_BIN, or run "
            "`livekit-avatar server --build`"
        )
    return build_server_binary()


def build_server_binary() -> Path:
    go = shutil.which("go")
    if go is None:
        raise ServerUnavailableError(
            f"building livekit-server {LIVEKIT_SERVER_VERSION} needs Go (>= 1.26) on PATH"
        )
    target = _cached_binary()
    target.parent.mkdir(parents=True, exist_ok=True)
    logger.info("building livekit-server %s with go (first run only)...", LIVEKIT_SERVER_VERSION)
    with tempfile.TemporaryDirectory(prefix="lk-build-") as gobin:
        env = {**os.environ, "GOBIN": gobin, "CGO_ENABLED": os.environ.get("CGO_ENABLED", "0")}
        proc = subprocess.run(
            [go, "install", f"{_GO_PACKAGE}@{LIVEKIT_SERVER_VERSION}"],
            env=env,
            capture_output=True,
            text=True,
        )
        if proc.returncode != 0:
            raise ServerUnavailableError(
                f"go install of livekit-server failed ({proc.returncode}):\n{proc.stderr[-2000:]}"
            )
        built = Path(gobin) / "server"
        # Copy then rename so a concurrent reader never sees a half-written binary.
        partial = target.with_suffix(".partial")
        shutil.copy2(built, partial)
        partial.chmod(0o755)
        partial.replace(target)
    logger.info("livekit-server cached at %s", target)
    return target


def _free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class ServerInfo:
    url: str
    api_key: str
    api_secret: str

    @property
    def http_url(self) -> str:
        return self.url.replace("ws://", "http://").replace("wss://", "https://")


class LocalLiveKitServer:
    """Runs ``livekit-server --dev`` bound to 127.0.0.1 on free ports.

    Use as a context manager, or ``start()`` / ``stop()``.
    """

    def __init__(
        self,
        *,
        port: int | None = None,
        binary: Path | None = None,
        log_path: Path | None = None,
    ) -> None:
        self._binary = binary
        self._port = port
        self._log_path = log_path
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_file: object | None = None
        self.info: ServerInfo | None = None

    def start(self, *, timeout: float = 30.0) -> ServerInfo:
        binary = self._binary or find_server_binary()
        port = self._port or _free_port()
        rtc_tcp = _free_port()
        rtc_udp = _free_port(socket.SOCK_DGRAM)
        config = (
            f"port: {port}\n"
            "rtc:\n"
            f"  tcp_port: {rtc_tcp}\n"
            f"  udp_port: {rtc_udp}\n"
            "  use_external_ip: false\n"
            "  enable_loopback_candidate: true\n"
            f"keys:\n  {DEV_API_KEY}: {DEV_API_SECRET}\n"
            "logging:\n  level: info\n"
        )
        log_target = (
            open(self._log_path, "ab") if self._log_path else subprocess.DEVNULL  # noqa: SIM115
        )
        self._log_file = log_target if self._log_path else None
        self._proc = subprocess.Popen(
            [
                str(binary),
                "--bind",
                "127.0.0.1",
                "--node-ip",
                "127.0.0.1",
                "--config-body",
                config,
            ],
            stdout=log_target,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        url = f"ws://127.0.0.1:{port}"
        self.info = ServerInfo(url=url, api_key=DEV_API_KEY, api_secret=DEV_API_SECRET)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise ServerUnavailableError(
                    f"livekit-server exited with code {self._proc.returncode} during start-up"
                    + (f"; see {self._log_path}" if self._log_path else "")
                )
            with contextlib.suppress(urllib.error.URLError, ConnectionError, OSError):
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1) as resp:
                    if resp.status == 200:
                        logger.info("livekit-server ready at %s (pid %d)", url, self._proc.pid)
                        return self.info
            time.sleep(0.1)
        self.stop()
        raise ServerUnavailableError(f"livekit-server did not become ready within {timeout:.0f} s")

    def stop(self, *, timeout: float = 5.0) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self._log_file is not None:
            self._log_file.close()  # type: ignore[attr-defined]
            self._log_file = None

    def __enter__(self) -> ServerInfo:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
