"""Worker generations: a worker process that has served ``max_jobs`` avatars hands over to a
fresh one, so a long-running worker keeps the memory of a new one.

LiveKit's native library keeps a little memory for every room a process has joined
(python-sdks#449); the avatar worker serves its jobs on threads of one process, so it would
grow without end (docs/benchmarks.md, "Churn"). The supervisor is the process the user
starts. It runs the worker in a child process (a *generation*); when that one has accepted
``max_jobs`` jobs it says so, the supervisor starts the next generation, and once that one
has registered with the server the old one stops taking jobs, finishes its avatars and
exits. Both generations take slots from one shared count, so the machine never renders more
than ``capacity`` avatars. A generation that dies is started again, backing off. A fixed
health-check port is the supervisor's (two generations cannot both hold it).

Nothing here imports LiveKit: the supervisor holds no rooms and stays small.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import multiprocessing
import os
import signal
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .worker import AvatarWorkerOptions

logger = logging.getLogger("livekit_avatar_plugin.worker")

# Messages between the supervisor and a generation.
DUE = "due"  # generation -> supervisor: max_jobs accepted, start my successor
REGISTERED = "registered"  # generation -> supervisor: the server knows me
RETIRE = "retire"  # supervisor -> generation: stop taking jobs, finish, exit

# At most this many generations at once (one taking jobs, the others finishing theirs).
MAX_GENERATIONS = 4
_RESTART_BACKOFF_S = (1.0, 2.0, 5.0, 10.0, 30.0)
_STABLE_S = 60.0  # a generation up this long resets the restart backoff


class Slots:
    """The machine's avatar slots, counted across worker processes.

    One counter per generation (ring of ``MAX_GENERATIONS``) under one lock, so the
    supervisor can give back the slots of a generation that died.
    """

    def __init__(self, capacity: int, *, context: Any = None) -> None:
        self.capacity = capacity
        self._held = (context or multiprocessing).Array("i", MAX_GENERATIONS)
        self.index = 0

    def for_generation(self, generation: int) -> Slots:
        mine = object.__new__(Slots)
        mine.capacity, mine._held, mine.index = self.capacity, self._held, generation % MAX_GENERATIONS
        return mine

    def take(self) -> bool:
        with self._held.get_lock():
            if sum(self._held) >= self.capacity:
                return False
            self._held[self.index] += 1
            return True

    def free(self) -> None:
        with self._held.get_lock():
            self._held[self.index] = max(0, self._held[self.index] - 1)

    def taken(self) -> int:
        with self._held.get_lock():
            return sum(self._held)

    def clear(self, generation: int) -> None:
        with self._held.get_lock():
            self._held[generation % MAX_GENERATIONS] = 0


def _die_with_parent() -> None:
    """Linux: the kernel kills this process when the supervisor dies, even by SIGKILL, so a
    crashed supervisor never leaves avatars rendering with nobody to stop them."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        if os.getppid() == 1:  # the supervisor died before prctl took effect
            os._exit(1)


def serve_generation(
    options: AvatarWorkerOptions, slots: Slots, channel: Connection, generation: int, verbose: bool
) -> None:
    """A generation's process: the worker, talking to the supervisor through ``channel``."""
    _die_with_parent()
    # Signals come from the supervisor only: a terminal's Ctrl-C reaches it, and it forwards.
    os.setpgrp()
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    from .._native_logs import stop_forwarding_native_logs
    from .worker import AvatarWorker, limit_malloc_arenas

    limit_malloc_arenas()
    stop_forwarding_native_logs()
    logger.info("worker generation %d started (pid %d)", generation, os.getpid())
    asyncio.run(AvatarWorker(options, slots=slots, supervisor=channel).run())


@dataclass
class _Generation:
    number: int
    process: Any  # multiprocessing.context.SpawnProcess
    channel: Connection
    started_at: float
    retiring: bool = False
    registered: bool = False


class Supervisor:
    """Runs worker generations until SIGINT/SIGTERM (forwarded: a second one stops at once)."""

    def __init__(self, options: AvatarWorkerOptions, *, verbose: bool = False) -> None:
        self.options = options
        self._verbose = verbose
        self._context = multiprocessing.get_context("spawn")
        self._slots = Slots(options.capacity, context=self._context)
        self._generations: dict[int, _Generation] = {}
        self._next = 0
        self._stopping = 0
        self._restarts = 0
        self._hold_successors_until = 0.0
        self._changed: asyncio.Event | None = None
        # Generations pick free ports; a fixed one is served here.
        self._generation_options = options.model_copy(update={"http_port": 0})

    def _start(self) -> _Generation:
        number, self._next = self._next, self._next + 1
        self._slots.clear(number)
        ours, theirs = self._context.Pipe()
        process = self._context.Process(
            target=serve_generation,
            args=(self._generation_options, self._slots.for_generation(number), theirs, number, self._verbose),
            name=f"avatar-worker-{number}",
        )
        process.start()
        theirs.close()
        generation = _Generation(number, process, ours, time.monotonic())
        self._generations[number] = generation
        loop = asyncio.get_running_loop()
        loop.add_reader(ours.fileno(), self._on_message, generation)
        loop.add_reader(process.sentinel, self._on_exit, generation)
        return generation

    def _taking_jobs(self) -> list[_Generation]:
        return [g for g in self._generations.values() if not g.retiring]

    def _on_message(self, generation: _Generation) -> None:
        try:
            message = generation.channel.recv()
        except (EOFError, OSError):
            asyncio.get_running_loop().remove_reader(generation.channel.fileno())
            return
        if message == DUE and not self._stopping:
            successors = [g for g in self._taking_jobs() if g.number > generation.number]
            if (
                not successors
                and len(self._generations) < MAX_GENERATIONS
                and time.monotonic() >= self._hold_successors_until
            ):
                logger.info(
                    "worker generation %d has served %d jobs: starting generation %d",
                    generation.number, self.options.max_jobs, self._next,
                )  # fmt: skip
                self._start()
        elif message == REGISTERED:
            generation.registered = True
            for older in self._taking_jobs():
                if older.number < generation.number:
                    self._retire(older)

    def _retire(self, generation: _Generation) -> None:
        generation.retiring = True
        with contextlib.suppress(OSError):
            generation.channel.send(RETIRE)

    def _on_exit(self, generation: _Generation) -> None:
        loop = asyncio.get_running_loop()
        loop.remove_reader(generation.process.sentinel)
        with contextlib.suppress(OSError, ValueError):
            loop.remove_reader(generation.channel.fileno())
        generation.process.join()
        generation.channel.close()
        del self._generations[generation.number]
        self._slots.clear(generation.number)
        code = generation.process.exitcode
        if generation.retiring or self._stopping:
            logger.info("worker generation %d exited (%s)", generation.number, code)
        else:
            logger.error("worker generation %d died (exit code %s)", generation.number, code)
            if not self._taking_jobs():
                asyncio.get_running_loop().create_task(self._restart(generation))
            elif not generation.registered:
                # A successor that cannot start: the old generation serves on; try later.
                self._hold_successors_until = time.monotonic() + _RESTART_BACKOFF_S[-1]
        assert self._changed is not None
        self._changed.set()

    async def _restart(self, died: _Generation) -> None:
        if time.monotonic() - died.started_at > _STABLE_S:
            self._restarts = 0
        delay = _RESTART_BACKOFF_S[min(self._restarts, len(_RESTART_BACKOFF_S) - 1)]
        self._restarts += 1
        logger.info("starting a new worker generation in %g s", delay)
        await asyncio.sleep(delay)
        if not self._stopping and not self._taking_jobs():
            self._start()

    def _on_signal(self) -> None:
        self._stopping += 1
        for generation in self._generations.values():
            with contextlib.suppress(ProcessLookupError):
                os.kill(generation.process.pid, signal.SIGTERM)
        assert self._changed is not None
        self._changed.set()

    def healthy(self) -> bool:
        """A registered generation is taking jobs."""
        return any(g.registered for g in self._taking_jobs())

    async def _serve_health(self) -> Any:
        from aiohttp import web

        async def health(_: Any) -> web.Response:
            if self.healthy():
                return web.Response(text="OK")
            return web.Response(status=503, text="no worker generation is registered")

        async def worker(_: Any) -> web.Response:
            return web.json_response({
                "agent_name": self.options.agent_name,
                "capacity": self.options.capacity,
                "slots_taken": self._slots.taken(),
                "generations": [
                    {"number": g.number, "pid": g.process.pid, "registered": g.registered,
                     "retiring": g.retiring}
                    for g in self._generations.values()
                ],
            })  # fmt: skip

        app = web.Application()
        app.add_routes([web.get("/", health), web.get("/worker", worker)])
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, port=self.options.http_port).start()
        return runner

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        self._changed = asyncio.Event()
        signals = (signal.SIGINT, signal.SIGTERM)
        for sig in signals:
            loop.add_signal_handler(sig, self._on_signal)
        health = await self._serve_health() if self.options.http_port else None
        try:
            self._start()
            while not (self._stopping and not self._generations):
                self._changed.clear()
                await self._changed.wait()
        finally:
            for sig in signals:
                loop.remove_signal_handler(sig)
            for generation in list(self._generations.values()):
                generation.process.kill()
                generation.process.join()
            if health is not None:
                await health.cleanup()
