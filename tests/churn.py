"""Many avatar sessions in one process, one after another and overlapping, each with speech
and an interruption: what the process holds afterwards, against what it held after the
first, and whether every segment's ``playback_finished`` was exact.

Used by ``tests/test_churn.py`` and ``benchmarks/churn.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

import psutil
from livekit import rtc

from livekit_avatar_plugin import VideoOptions

from .av_harness import make_token
from .rooms import agent_with_avatar, shut_down

REPLY_S = 1.0  # "clicks 1": one second of speech, played whole
INTERRUPT_AFTER_S = 0.6  # "clicks 2" is interrupted this far in


@dataclass
class Holdings:
    """What the process holds, after a collection."""

    os_threads: int
    py_threads: int  # besides the idle workers of asyncio's default executor (see below)
    fds: int
    tasks: int
    onnx_sessions: int
    sessions_alive: int  # AvatarSession, AgentSession and rtc.Room objects still in memory
    rss_mb: float
    # asyncio.to_thread's pool grows to min(32, cores + 4) idle workers under concurrency
    # and keeps them for reuse: bounded, so reported but not counted as held.
    pool_threads: int = 0
    thread_names: tuple[str, ...] = ()  # the OS threads' names, to say which one is extra

    @classmethod
    def now(cls) -> Holdings:
        import onnxruntime as ort
        from livekit.agents import AgentSession

        from livekit_avatar_plugin import AvatarSession

        gc.collect()
        objects = gc.get_objects()
        return cls(
            # asyncio's idle pool workers (counted apart, below) are OS threads too
            os_threads=len(os.listdir("/proc/self/task")) - sum(t.name.startswith("asyncio_") for t in threading.enumerate()),
            # _DummyThread entries stand for native threads that once called into Python and
            # are never removed; os_threads counts the real ones.
            py_threads=sum(not t.name.startswith("asyncio_") and not isinstance(t, threading._DummyThread)
                           for t in threading.enumerate()),
            pool_threads=sum(t.name.startswith("asyncio_") for t in threading.enumerate()),
            fds=len(os.listdir("/proc/self/fd")),
            tasks=len(asyncio.all_tasks()),
            onnx_sessions=sum(isinstance(o, ort.InferenceSession) for o in objects),
            sessions_alive=sum(isinstance(o, (AvatarSession, AgentSession, rtc.Room)) for o in objects),
            rss_mb=psutil.Process().memory_info().rss / 2**20,
            thread_names=tuple(thread_names()),
        )

    def counts(self) -> dict[str, int]:
        return {k: v for k, v in vars(self).items() if k not in ("rss_mb", "pool_threads", "thread_names")}


@dataclass
class ChurnReport:
    sessions: int
    after_first: Holdings
    after_all: Holdings
    wrong_playback: list[str] = field(default_factory=list)  # one line per inexact session
    seconds: float = 0.0

    def leaked(self) -> dict[str, int]:
        """Counts above what the process held after its first session."""
        first, last = self.after_first.counts(), self.after_all.counts()
        return {k: last[k] - first[k] for k in first if last[k] > first[k]}

    def extra_threads(self) -> list[str]:
        """OS thread names held now and not after the first session."""
        from collections import Counter

        return sorted((Counter(self.after_all.thread_names) - Counter(self.after_first.thread_names)).elements())

    def rss_growth(self) -> float:
        return self.after_all.rss_mb / self.after_first.rss_mb - 1.0


async def one_session(info, index: int, size: int, **avatar_options) -> str | None:
    """An agent with the shipped face says a reply whole, then one it interrupts; returns
    what was wrong with its ``playback_finished`` events, or None. ``avatar_options``:
    e.g. ``mode="dispatch", agent_name=...`` for a worker's avatar."""
    name = f"churn-{index}-{uuid.uuid4().hex[:6]}"
    agent_room, session, avatar = await agent_with_avatar(
        info, name, face_pipeline=None, video=VideoOptions(width=size, height=size), **avatar_options
    )
    user = rtc.Room()
    finished: list[tuple[float, bool]] = []
    finished_at: list[float] = []
    heard_by = 0.0
    try:
        await user.connect(info.url, make_token(info, name, f"user-{index}"))
        def on_finished(ev) -> None:
            finished.append((ev.playback_position, ev.interrupted))
            finished_at.append(time.monotonic())

        avatar._failover.on("playback_finished", on_finished)
        await asyncio.wait_for(session.say("clicks 1").wait_for_playout(), 30)
        said_at = time.monotonic()
        handle = session.say("clicks 2")
        deadline = time.monotonic() + 15
        while (heard := avatar._transport.heard_position()) < INTERRUPT_AFTER_S:
            assert time.monotonic() < deadline, "the second reply never played"
            await asyncio.sleep(0.01)
        interrupted_at = time.monotonic()
        handle.interrupt()
        await asyncio.wait_for(handle.wait_for_playout(), 15)
        deadline = time.monotonic() + 5
        while len(finished) < 2 and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        # What can have been heard by the time the avatar reported the interruption. A
        # dispatched avatar's position reaches the agent late (its start crosses the data
        # channel), so there the bound is the time since the reply was asked for.
        reported_at = finished_at[-1] if finished_at else time.monotonic()
        since = said_at if avatar_options.get("mode") == "dispatch" else interrupted_at - heard
        heard_by = reported_at - since
    finally:
        await shut_down(session, avatar, agent_room, user)
    if len(finished) != 2:
        return f"session {index}: {len(finished)} playback_finished events, not 2: {finished}"
    (whole, whole_cut), (part, part_cut) = finished
    if whole_cut or abs(whole - REPLY_S) > 0.05:
        return f"session {index}: the whole reply finished at {whole:.3f} s (interrupted={whole_cut})"
    if not part_cut or not INTERRUPT_AFTER_S - 0.05 <= part <= heard_by + 0.05:
        return (f"session {index}: the interrupted reply finished at {part:.3f} s (interrupted={part_cut}), "
                f"{INTERRUPT_AFTER_S:g}-{heard_by:.3f} s heard")
    return None


async def settle(first: Holdings, timeout: float = 30.0) -> Holdings:
    """Holdings once closing sockets and threads are gone (or after ``timeout``): LiveKit's
    runtime keeps an idle blocking-pool thread for 10 s before it exits."""
    deadline = time.monotonic() + timeout
    while True:
        now = Holdings.now()
        if all(v <= first.counts()[k] for k, v in now.counts().items()) or time.monotonic() > deadline:
            return now
        await asyncio.sleep(0.5)


async def _sessions(
    info, *, sequential: int, concurrent: int, size: int, after_first: Callable[[], object],
    progress: Callable[[str], None], after_each: Callable[[int], None] = lambda i: None, **avatar_options,
) -> list[str]:  # fmt: skip
    """``sequential`` sessions one after another, then ``concurrent`` overlapping ones (each
    started 0.3 s after the last); what was wrong with any, one line each."""
    wrong = [w for w in [await one_session(info, 0, size, **avatar_options)] if w]
    await asyncio.sleep(1.0)
    progress(f"after the first session: {after_first()}")
    for i in range(1, sequential):
        problem = await one_session(info, i, size, **avatar_options)
        if problem:
            wrong.append(problem)
        after_each(i)
        if i % 10 == 0:
            progress(f"{i + 1} sessions")

    async def staggered(i: int) -> str | None:
        await asyncio.sleep(0.3 * i)
        return await one_session(info, sequential + i, size, **avatar_options)

    if concurrent:
        results = await asyncio.gather(*(staggered(i) for i in range(concurrent)))
        wrong += [w for w in results if w]
        progress(f"{concurrent} concurrent sessions done")
    return wrong


async def run_churn(
    info, *, sequential: int, concurrent: int, size: int = 128,
    progress: Callable[[str], None] = lambda line: None,
) -> ChurnReport:  # fmt: skip
    """Churn of avatars rendered in this process (``participant`` mode)."""
    t0 = time.monotonic()
    held: list[Holdings] = []
    wrong = await _sessions(info, sequential=sequential, concurrent=concurrent, size=size,
                            after_first=lambda: held.append(Holdings.now()) or held[0], progress=progress)  # fmt: skip
    last = await settle(held[0])
    return ChurnReport(sequential + concurrent, held[0], last, wrong, time.monotonic() - t0)


@dataclass
class WorkerHoldings:
    """What an avatar worker holds: its process and every process under it."""

    processes: int
    os_threads: int
    fds: int
    rss_mb: float
    pids: tuple[int, ...] = ()
    thread_names: tuple[str, ...] = ()

    @classmethod
    def of(cls, pid: int) -> WorkerHoldings:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
        alive = []
        for proc in procs:
            with contextlib.suppress(psutil.Error):
                alive.append((proc.pid, proc.num_threads(), proc.num_fds(), proc.memory_info().rss))
        return cls(len(alive), sum(a[1] for a in alive), sum(a[2] for a in alive),
                   sum(a[3] for a in alive) / 2**20, tuple(a[0] for a in alive),
                   tuple(sorted(name for a in alive for name in thread_names(a[0]))))  # fmt: skip

    def counts(self) -> dict[str, int]:
        return {"processes": self.processes, "os_threads": self.os_threads, "fds": self.fds}


@dataclass
class WorkerChurnReport:
    sessions: int
    after_first: WorkerHoldings
    after_all: WorkerHoldings
    wrong_playback: list[str] = field(default_factory=list)
    seconds: float = 0.0
    generations: int = 1  # worker processes that served (a fresh one every max_jobs)
    rss_series: list[float] = field(default_factory=list)  # the worker's MB after each session in a row

    def leaked(self) -> dict[str, int]:
        first, last = self.after_first.counts(), self.after_all.counts()
        return {k: last[k] - first[k] for k in first if last[k] > first[k]}

    def rss_growth(self) -> float:
        return self.after_all.rss_mb / self.after_first.rss_mb - 1.0

    def extra_threads(self) -> list[str]:
        from collections import Counter

        return sorted((Counter(self.after_all.thread_names) - Counter(self.after_first.thread_names)).elements())


async def run_worker_churn(
    info, worker_pid: int, agent_name: str, *, sequential: int, concurrent: int, size: int = 128,
    generations: Callable[[], int] = lambda: 1, progress: Callable[[str], None] = lambda line: None,
) -> WorkerChurnReport:  # fmt: skip
    """Churn of avatars that an ``livekit-avatar worker`` (``worker_pid``) renders
    (``dispatch`` mode); what the worker's processes hold is read from outside."""
    t0 = time.monotonic()
    held: list[WorkerHoldings] = []

    def first() -> WorkerHoldings:
        held.append(WorkerHoldings.of(worker_pid))
        return held[0]

    series: list[float] = []
    wrong = await _sessions(info, sequential=sequential, concurrent=concurrent, size=size, after_first=first,
                            after_each=lambda i: series.append(WorkerHoldings.of(worker_pid).rss_mb),
                            progress=progress, mode="dispatch", agent_name=agent_name)  # fmt: skip
    # Retiring generations exit once their avatars have left; sockets close a little later.
    deadline = time.monotonic() + 30
    while True:
        last = WorkerHoldings.of(worker_pid)
        if all(v <= held[0].counts()[k] for k, v in last.counts().items()) or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.5)
    return WorkerChurnReport(sequential + concurrent, held[0], last, wrong, time.monotonic() - t0, generations(),
                             [held[0].rss_mb, *series])  # fmt: skip


async def bare_rooms(info, sessions: int, size: int) -> float:
    """The control: MB of RSS per session that LiveKit's SDK alone keeps, for two rooms
    (one publishing audio and ``size`` video for a second), with no plugin code at all."""
    import ctypes

    import numpy as np

    async def one(i: int) -> None:
        name = f"bare-{i}-{uuid.uuid4().hex[:6]}"
        a, b = rtc.Room(), rtc.Room()
        await a.connect(info.url, make_token(info, name, "a", agent=True))
        await b.connect(info.url, make_token(info, name, "b"))
        audio, video = rtc.AudioSource(24000, 1), rtc.VideoSource(size, size)
        await a.local_participant.publish_track(rtc.LocalAudioTrack.create_audio_track("a", audio))
        await a.local_participant.publish_track(rtc.LocalVideoTrack.create_video_track("v", video))
        frame = np.zeros((size, size, 4), np.uint8)
        for k in range(25):
            frame[:] = k * 5
            video.capture_frame(rtc.VideoFrame(size, size, rtc.VideoBufferType.RGBA, frame.tobytes()))
            await asyncio.sleep(0.04)
        await audio.aclose()
        await video.aclose()
        await a.disconnect()
        await b.disconnect()

    trim = ctypes.CDLL("libc.so.6").malloc_trim
    await one(0)
    gc.collect()
    trim(0)
    before = Holdings.now().rss_mb
    for i in range(1, sessions + 1):
        await one(i)
    gc.collect()
    trim(0)
    return (Holdings.now().rss_mb - before) / sessions


def thread_names(pid: int | str = "self") -> list[str]:
    """The OS threads' names, for a failure message."""
    names = []
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            names.append(open(f"/proc/{pid}/task/{task}/comm").read().strip())
        except OSError:
            pass
    return sorted(names)
