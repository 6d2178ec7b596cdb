"""``livekit-avatar demo``: a LiveKit server, the example agent worker and the viewer, at once.

Starts (unless ``LIVEKIT_URL`` names a server) ``livekit-server --dev`` on loopback, then
``examples/agent.py dev`` against it, then the viewer server, and prints the viewer's URL
once the worker has registered, so the page works the moment it is opened. Ctrl-C (or
SIGTERM) stops all three; the worker runs in its own process group, which is signalled as
a whole, so the job processes it forks go with it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import os
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel, Field

from .._errors import AvatarError
from ..local_server import LocalLiveKitServer, ServerInfo

if TYPE_CHECKING:
    from .server import ViewerServer

_REPO_AGENT = Path(__file__).resolve().parents[2] / "examples" / "agent.py"
# The line the worker logs once LiveKit accepted it (livekit-agents 1.8 worker.py).
_REGISTERED = b"registered worker"
_SERVER_ENV = ("LIVEKIT_PORT", "LIVEKIT_CONFIG", "LIVEKIT_KEYS", "NODE_IP", "UDP_PORT", "REDIS_HOST")


class DemoOptions(BaseModel):
    livekit_port: int = Field(default=7880, ge=0, le=65535, description="0: a free port")
    viewer_port: int = Field(default=7890, ge=0, le=65535, description="0: a free port")
    agent_script: Path = _REPO_AGENT
    avatar: str = Field(default="default", description="'default' or an avatar package folder")
    realtime: bool = Field(
        default=False, description="with OPENAI_API_KEY: OpenAI's realtime model, not STT/LLM/TTS"
    )
    register_timeout_s: float = Field(default=180.0, gt=0)
    stop_timeout_s: float = Field(default=10.0, gt=0)


class DemoError(AvatarError, RuntimeError):
    """The demo could not start one of its parts."""


def _die_with_parent() -> None:
    # Runs in the child before exec: it gets SIGTERM if the demo itself is killed (-9), so
    # even that leaves no worker behind. Also a new session: Ctrl-C reaches only the demo,
    # which stops the worker in order.
    os.setsid()
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _livekit_from_env() -> ServerInfo | None:
    url = os.environ.get("LIVEKIT_URL")
    key = os.environ.get("LIVEKIT_API_KEY")
    secret = os.environ.get("LIVEKIT_API_SECRET")
    if not url:
        return None
    if not (key and secret):
        raise DemoError("LIVEKIT_URL is set but LIVEKIT_API_KEY / LIVEKIT_API_SECRET are not")
    return ServerInfo(url=url, api_key=key, api_secret=secret)


class Demo:
    def __init__(self, options: DemoOptions) -> None:
        if not options.agent_script.is_file():
            raise DemoError(f"agent script not found: {options.agent_script}")
        self.options = options
        self._server: LocalLiveKitServer | None = None
        self._agent: asyncio.subprocess.Process | None = None
        self._viewer: ViewerServer | None = None
        self._registered = asyncio.Event()

    async def run(self) -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        try:
            url = await self._start(stop)
            if url is None:
                return 130
            _banner(url, self._info)
            agent_exit = asyncio.ensure_future(self._agent.wait())  # type: ignore[union-attr]
            stopped = asyncio.ensure_future(stop.wait())
            done, _ = await asyncio.wait({agent_exit, stopped}, return_when=asyncio.FIRST_COMPLETED)
            stopped.cancel()
            if agent_exit in done:
                print(f"agent worker exited with code {agent_exit.result()}", file=sys.stderr)
                return 1
            return 0
        finally:
            await self.aclose()

    async def _start(self, stop: asyncio.Event) -> str | None:
        from .server import ViewerServer  # aiohttp: only when the demo runs

        info = _livekit_from_env()
        if info is None:
            # livekit-server reads these from its environment and they override the config
            # we give it (LIVEKIT_PORT, which demo.sh's users set, moves its port away from
            # the one we wait on); the demo's server takes its settings from our options only.
            for name in _SERVER_ENV:
                os.environ.pop(name, None)
            self._server = LocalLiveKitServer(port=self.options.livekit_port or None)
            info = await asyncio.to_thread(self._server.start)
        self._info = info
        env = {
            **os.environ,
            "LIVEKIT_URL": info.url,
            "LIVEKIT_API_KEY": info.api_key,
            "LIVEKIT_API_SECRET": info.api_secret,
        }
        if self.options.realtime:
            env["AGENT_REALTIME"] = "1"
        env["AVATAR"] = self.options.avatar  # examples/_common.py reads it
        self._agent = await asyncio.create_subprocess_exec(
            sys.executable,
            str(self.options.agent_script),
            "dev",
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            preexec_fn=_die_with_parent,
        )
        self._echo = asyncio.ensure_future(self._echo_agent_output())
        viewer = self._viewer = ViewerServer(info, port=self.options.viewer_port)
        url = await viewer.start()

        waits = {
            asyncio.ensure_future(self._registered.wait()): "registered",
            asyncio.ensure_future(stop.wait()): "stopped",
            asyncio.ensure_future(self._agent.wait()): "exited",
        }
        done, pending = await asyncio.wait(
            waits, timeout=self.options.register_timeout_s, return_when=asyncio.FIRST_COMPLETED
        )
        for task in pending:
            task.cancel()
        outcome = waits[done.pop()] if done else "timeout"
        if outcome == "stopped":
            return None
        if outcome != "registered":
            raise DemoError(
                f"the agent worker did not register with {info.url} ({outcome}); see its log above"
            )
        return url

    async def _echo_agent_output(self) -> None:
        assert self._agent is not None and self._agent.stdout is not None
        out = sys.stdout.buffer
        async for line in self._agent.stdout:
            out.write(line)
            out.flush()
            if _REGISTERED in line:
                self._registered.set()

    async def aclose(self) -> None:
        agent, self._agent = self._agent, None
        if agent is not None and agent.returncode is None:
            await _stop_group(agent, self.options.stop_timeout_s)
        elif agent is not None:
            _kill_group(agent.pid, signal.SIGKILL)  # the worker is gone; its children may not be
        echo = getattr(self, "_echo", None)
        if echo is not None:
            with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(echo, 2)
        if self._viewer is not None:
            await self._viewer.aclose()
            self._viewer = None
        if self._server is not None:
            await asyncio.to_thread(self._server.stop)
            self._server = None


def _kill_group(pgid: int, sig: int) -> bool:
    try:
        os.killpg(pgid, sig)
        return True
    except ProcessLookupError:
        return False


async def _stop_group(proc: asyncio.subprocess.Process, timeout: float) -> None:
    """SIGTERM the worker, wait, then SIGKILL whatever is left of its process group.

    The worker alone is signalled: it shuts its job processes down itself, and a job
    process signalled directly exits with 255, which the worker logs as an error."""
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(signal.SIGTERM)
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(proc.wait(), timeout)
    # Job processes may outlive the worker by a moment; none may outlive the demo.
    _kill_group(proc.pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        await proc.wait()


def _banner(url: str, info: ServerInfo) -> None:
    bold = "\033[1m" if sys.stdout.isatty() else ""
    reset = "\033[0m" if bold else ""
    print(
        f"\n{bold}Viewer: {url}{reset}\n"
        f"LiveKit server: {info.url} (key {info.api_key}). Open the viewer, type a message;"
        " Ctrl-C stops everything.\n",
        flush=True,
    )


# -- the CLI subcommand ----------------------------------------------------------------------


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="run the local demo: LiveKit server, example agent with its avatar, browser viewer",
    )
    p.add_argument("--port", type=int, default=7880, help="LiveKit server port (0: any free port)")
    p.add_argument("--viewer-port", type=int, default=7890, help="viewer port (0: any free port)")
    p.add_argument("--agent", type=Path, default=_REPO_AGENT, help="agent script run with `dev`")
    p.add_argument("--avatar", default="default",
                   help="the face: 'default', or a package made by `livekit-avatar create` (photo or clip)")
    p.add_argument(
        "--realtime",
        action="store_true",
        help="with OPENAI_API_KEY set: talk through OpenAI's realtime model",
    )
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    if args.avatar != "default":
        from .._face.package import AvatarPackageError, package_kind

        try:
            kind = package_kind(Path(args.avatar))
        except AvatarPackageError as exc:
            print(f"error: --avatar {args.avatar}: {exc}", file=sys.stderr)
            return 2
        print(f"avatar: {args.avatar} ({kind} avatar)", flush=True)
    options = DemoOptions(
        livekit_port=args.port,
        viewer_port=args.viewer_port,
        agent_script=args.agent,
        avatar=str(Path(args.avatar).resolve()) if args.avatar != "default" else "default",
        realtime=args.realtime,
    )
    try:
        return asyncio.run(Demo(options).run())
    except DemoError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
