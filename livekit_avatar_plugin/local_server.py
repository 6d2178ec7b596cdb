"""A real LiveKit server on loopback, for local development, the demo and the tests.

The server is not on PyPI; it is a Go module. ``find_server_binary`` honours, in order:
``LIVEKIT_SERVER_BIN``, a ``livekit-server`` on PATH, a cached build, and finally builds
the pinned release with ``go install`` and caches it, so a second run skips the build.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ._errors import AvatarError

logger = logging.getLogger("livekit_avatar_plugin.local_server")

LIVEKIT_SERVER_VERSION = "v1.13.5"
_GO_PACKAGE = "github.com/livekit/livekit-server/cmd/server"
DEV_API_KEY = "devkey"
DEV_API_SECRET = "secret"


class ServerUnavailableError(AvatarError, RuntimeError):
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


def _ephemeral_range() -> tuple[int, int]:
    with contextlib.suppress(OSError, ValueError):
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    return 32768, 60999


def _free_port(kind: int = socket.SOCK_STREAM) -> int:
    """A free port outside the kernel's ephemeral range.

    The server keeps its ports across a restart; an ephemeral port could be taken by any
    outgoing connection while the server is down, and the restart would fail to bind.
    """
    low, high = _ephemeral_range()
    candidates = [p for p in range(20000, 32768) if not low <= p <= high]
    for port in random.sample(candidates, min(200, len(candidates))):
        with socket.socket(socket.AF_INET, kind) as s:
            try:
                s.bind(("0.0.0.0", port))  # the server's RTC ports bind every interface
            except OSError:
                continue
            return port
    with socket.socket(socket.AF_INET, kind) as s:  # a crowded machine: any port will do
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
    """Runs ``livekit-server --dev`` bound to one address (loopback by default) on free ports.

    Use as a context manager, or ``start()`` / ``stop()``. The ports are chosen on the
    first start and kept, so ``restart()`` brings the server back where clients expect it
    (a server restart, as a deployment would see one). ``host`` and ``launcher`` let tests
    run it elsewhere, e.g. inside a network namespace: ``launcher=["ip", "netns", "exec",
    "ns1"]``, and ``host`` the namespace's address.
    """

    def __init__(
        self,
        *,
        port: int | None = None,
        binary: Path | None = None,
        log_path: Path | None = None,
        host: str = "127.0.0.1",
        launcher: Sequence[str] = (),
        api_key: str = DEV_API_KEY,
        api_secret: str = DEV_API_SECRET,
    ) -> None:
        self._binary = binary
        self._port = port
        self._log_path = log_path
        self._host = host
        self._launcher = list(launcher)
        self._keys = (api_key, api_secret)
        self._rtc_ports: tuple[int, int] | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_file: object | None = None
        self.info: ServerInfo | None = None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def _config(self) -> str:
        assert self._port is not None and self._rtc_ports is not None
        rtc_tcp, rtc_udp = self._rtc_ports
        # Loopback candidates only for a loopback server: with another address as well,
        # the media mux answers that address's checks from its loopback socket and ICE
        # never connects.
        loopback = "true" if self._host.startswith("127.") else "false"
        return (
            f"port: {self._port}\n"
            "rtc:\n"
            f"  tcp_port: {rtc_tcp}\n"
            f"  udp_port: {rtc_udp}\n"
            "  use_external_ip: false\n"
            f"  enable_loopback_candidate: {loopback}\n"
            f"keys:\n  {self._keys[0]}: {self._keys[1]}\n"
            # Subscribers get one media stream per published `stream` name (the avatar's
            # audio + video), which is what lets browsers lip-sync them; off by default.
            "room:\n  sync_streams: true\n"
            "logging:\n  level: info\n"
        )

    def start(self, *, timeout: float = 30.0) -> ServerInfo:
        if self._proc is not None and self._proc.poll() is None:
            raise ServerUnavailableError("this livekit-server is already running; stop() it first")
        binary = self._binary or find_server_binary()
        # Ports are picked once: a restart must come back on the same ones.
        self._port = self._port or _free_port()
        self._rtc_ports = self._rtc_ports or (_free_port(), _free_port(socket.SOCK_DGRAM))
        log_target = (
            open(self._log_path, "ab") if self._log_path else subprocess.DEVNULL  # noqa: SIM115
        )
        self._log_file = log_target if self._log_path else None
        self._proc = subprocess.Popen(
            [
                *self._launcher,
                str(binary),
                "--bind",
                self._host,
                "--node-ip",
                self._host,
            ],
            # The config holds the API secret: in the environment (readable by this user
            # only), not on the command line (readable by everyone in `ps`).
            env={**os.environ, "LIVEKIT_CONFIG": self._config()},
            stdout=log_target,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        url = f"ws://{self._host}:{self._port}"
        self.info = ServerInfo(url=url, api_key=self._keys[0], api_secret=self._keys[1])
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                code = self._proc.returncode
                self.stop()
                raise ServerUnavailableError(
                    f"livekit-server exited with code {code} during start-up"
                    + (f"; see {self._log_path}" if self._log_path else "")
                )
            with contextlib.suppress(urllib.error.URLError, ConnectionError, OSError):
                with urllib.request.urlopen(f"http://{self._host}:{self._port}/", timeout=1) as resp:
                    if resp.status == 200:
                        logger.info("livekit-server ready at %s (pid %d)", url, self._proc.pid)
                        return self.info
            time.sleep(0.1)
        self.stop()
        raise ServerUnavailableError(f"livekit-server did not become ready within {timeout:.0f} s")

    def stop(self, *, timeout: float = 5.0, kill: bool = False) -> None:
        """Stop the server: SIGTERM (it drains rooms for a few seconds), or ``kill`` it at once."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            if kill:
                proc.kill()
            else:
                proc.terminate()
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self._log_file is not None:
            self._log_file.close()  # type: ignore[attr-defined]
            self._log_file = None

    def restart(
        self, *, down_s: float = 0.0, kill: bool = False, timeout: float = 30.0
    ) -> ServerInfo:
        """Stop the server (``kill``: a crash, no draining), stay down ``down_s`` seconds,
        start it again on the same ports.

        Every room and participant is forgotten, as after a real server restart.
        """
        if self._port is None:
            raise ServerUnavailableError("restart() needs a server that was started before")
        self.stop(kill=kill)
        if down_s > 0:
            time.sleep(down_s)
        return self.start(timeout=timeout)

    def __enter__(self) -> ServerInfo:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
