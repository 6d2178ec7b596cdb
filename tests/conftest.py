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


# -- leaving the interpreter ----------------------------------------------------------------

_exit_status: list[int] = []


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    _exit_status.append(int(exitstatus))


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    """Leave without finalising the interpreter once pytest has said everything.

    LiveKit's FFI runtime keeps threads that call back into Python; while the interpreter
    finalises, such a callback can panic inside an ``extern "C"`` function, which Rust
    turns into an abort (seen once in ten short runs, after the tests had passed), and the
    run would exit 134 instead of its verdict. Every report and cache is written by now.
    """
    import sys

    if _exit_status and "livekit.rtc" in sys.modules:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(_exit_status[-1])


# -- avatar workers (dispatch mode) ---------------------------------------------------------

REPO_ROOT = Path(__file__).resolve().parent.parent
PATTERN_PIPELINE = "tests.pattern_pipeline:TestPatternPipeline"


class WorkerProcess:
    """A ``livekit-avatar worker`` child process, with its log kept for inspection."""

    def __init__(
        self,
        info: ServerInfo,
        *,
        agent_name: str,
        capacity: int = 4,
        face_pipeline: str | None = PATTERN_PIPELINE,
        avatar: str | None = None,
        log_path: Path | None = None,
        max_jobs: int | None = None,
        http_port: int | None = None,
    ) -> None:
        import subprocess
        import sys

        self.agent_name = agent_name
        self.log_path = log_path or Path(tempfile.mkstemp(prefix="avatar-worker-", suffix=".log")[1])
        args = [sys.executable, "-m", "livekit_avatar_plugin.cli", "worker",
                "--agent-name", agent_name, "--capacity", str(capacity),
                "--url", info.url, "--api-key", info.api_key, "--api-secret", info.api_secret]  # fmt: skip
        if face_pipeline:
            args += ["--face-pipeline", face_pipeline]
        if avatar:
            args += ["--avatar", avatar]
        if max_jobs is not None:
            args += ["--max-jobs", str(max_jobs)]
        if http_port is not None:
            args += ["--http-port", str(http_port)]
        env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), PYTHONUNBUFFERED="1")
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            args, cwd=REPO_ROOT, env=env, stdout=self._log, stderr=subprocess.STDOUT
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_registered(self, timeout: float = 60.0) -> None:
        import time

        deadline = time.monotonic() + timeout
        while "registered worker" not in self.log():
            if self.proc.poll() is not None:
                raise RuntimeError(f"avatar worker exited ({self.proc.returncode}):\n{self.log()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"avatar worker did not register in {timeout} s:\n{self.log()}")
            time.sleep(0.1)

    def rendered(self) -> list[str]:
        """Avatar identities this worker has rendered, in order."""
        import re

        return re.findall(r"avatar (\S+) rendering for agent", self.log())

    def generations(self) -> list[int]:
        """Process ids of the worker generations started so far, in order."""
        import re

        return [int(pid) for pid in re.findall(r"worker generation \d+ started \(pid (\d+)\)", self.log())]

    def serving_pid(self) -> int:
        """The process that renders: the newest generation, or the worker itself."""
        pids = self.generations()
        return pids[-1] if pids else self.proc.pid

    def kill(self) -> None:
        """Die as a crash would: no drain, no goodbye."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def stop(self) -> None:
        import signal
        import subprocess

        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            self.proc.send_signal(signal.SIGINT)  # a second signal skips the drain
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()
        self._log.close()


@pytest.fixture
def start_avatar_worker(livekit_server):
    """Start ``livekit-avatar worker`` processes (test-pattern face); all stop after the test."""
    started: list[WorkerProcess] = []

    def start(agent_name: str, **kwargs) -> WorkerProcess:
        worker = WorkerProcess(livekit_server, agent_name=agent_name, **kwargs)
        started.append(worker)
        worker.wait_registered()
        return worker

    yield start
    for worker in started:
        worker.stop()


@pytest.fixture(scope="session")
def avatar_worker(livekit_server) -> Iterator[WorkerProcess]:
    """One avatar worker (test-pattern face) shared by the dispatch tests."""
    import uuid

    worker = WorkerProcess(livekit_server, agent_name=f"avatar-test-{uuid.uuid4().hex[:6]}")
    try:
        worker.wait_registered()
        yield worker
    finally:
        worker.stop()


# -- a server of the test's own (faults: restarts, crashes) --------------------------------


@pytest.fixture
def private_livekit_server() -> Iterator[LocalLiveKitServer]:
    """A ``livekit-server --dev`` for this test alone, so it may be restarted or killed.

    Yields the ``LocalLiveKitServer`` (``.info`` has its URL and keys).
    """
    log = Path(tempfile.mkstemp(prefix="livekit-private-server-", suffix=".log")[1])
    server = LocalLiveKitServer(log_path=log)
    server.start()
    try:
        yield server
    finally:
        server.stop(kill=True)


# -- footage avatars ---------------------------------------------------------------------------


@pytest.fixture(scope="session")
def synthetic_footage(tmp_path_factory):
    """A footage avatar built from a synthetic clip of the astronaut photo avatar: idle 4 s,
    talking 8 s, listening 4 s, the picture 120 ms after the sound. (truth, FootageAvatar)."""
    from livekit_avatar_plugin._face.footage_build import create_footage_avatar

    from .footage_synth import make_clip

    d = tmp_path_factory.mktemp("synthetic-footage")
    truth = make_clip(d / "clip.mp4", offset_ms=120.0)
    return truth, create_footage_avatar(d / "clip.mp4", d / "avatar")
