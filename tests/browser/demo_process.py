"""The demo command as a user runs it, for tests: start, wait for the viewer URL, Ctrl-C.

Every process the demo starts inherits a unique environment marker, so after it stops a
test can find any survivor by scanning ``/proc``, even one re-parented to init.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
_URL = re.compile(r"Viewer: (http://\S+)")


def processes_with_marker(marker: str) -> list[tuple[int, str]]:
    """(pid, command line) of every live process whose environment holds ``marker``."""
    needle = marker.encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if needle not in (entry / "environ").read_bytes():
                continue
            stat = (entry / "stat").read_text()
            if stat.rsplit(")", 1)[1].split()[0] == "Z":
                continue  # a zombie has exited; only its parent's wait() is missing
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        found.append((int(entry.name), cmd.strip()))
    return found


class DemoProcess:
    """Runs ``command`` (the demo) with free ports and collects its output."""

    def __init__(self, command: Sequence[str], *, env: dict[str, str] | None = None) -> None:
        self.marker = f"demo-test-{uuid.uuid4().hex}"
        self.lines: list[str] = []
        self.url: str | None = None
        self._url_seen = threading.Event()
        full_env = {
            **os.environ,
            "LIVEKIT_PORT": "0",
            "VIEWER_PORT": "0",
            "LIVEKIT_AVATAR_DEMO_MARK": self.marker,
            "PYTHONUNBUFFERED": "1",
            **(env or {}),
        }
        for name in ("LIVEKIT_URL", "LIVEKIT_API_KEY", "LIVEKIT_API_SECRET"):
            full_env.pop(name, None)  # the demo starts its own server
        self.proc = subprocess.Popen(
            list(command),
            cwd=ROOT,
            env=full_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,  # like a terminal: the test signals the demo alone
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))
            match = _URL.search(line)
            if match and self.url is None:
                self.url = match.group(1)
                self._url_seen.set()
        self._url_seen.set()

    def wait_url(self, timeout: float) -> str:
        self._url_seen.wait(timeout)
        if self.url is None:
            raise AssertionError(
                f"the demo printed no viewer URL within {timeout:.0f} s "
                f"(exit code {self.proc.poll()}); its output:\n" + self.output()
            )
        return self.url

    def interrupt(self, timeout: float = 30.0) -> int:
        """Ctrl-C, as a user would; returns the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"the demo did not stop within {timeout:.0f} s of Ctrl-C") from None
        finally:
            self._reader.join(5)

    def survivors(self, grace_s: float = 3.0) -> list[tuple[int, str]]:
        deadline = time.monotonic() + grace_s
        while (left := processes_with_marker(self.marker)) and time.monotonic() < deadline:
            time.sleep(0.1)
        return left

    def kill_survivors(self) -> None:
        for pid, _ in processes_with_marker(self.marker):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def output(self, last: int = 60) -> str:
        return "\n".join(self.lines[-last:])
