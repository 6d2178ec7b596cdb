"""The avatar worker: a LiveKit agent worker whose jobs are avatars for other agents.

One worker process renders up to ``capacity`` avatars at once. Jobs run as threads of
that process (LiveKit's thread executor), so the models load once per process, in the
setup function, and every job shares them; run more worker processes, on this machine
or others, to scale out. ``livekit-avatar worker`` runs it under a supervisor that hands
over to a fresh process every ``max_jobs`` jobs (``supervisor.py``).

Load: livekit-server dispatches only to workers whose reported load is below its
``agents.target_load`` (0.7 unless configured), picking among them at random weighted by
``1 - load``. The worker therefore reports ``target_load * active / capacity``: below the
target until exactly ``capacity`` avatars run, and lighter workers are preferred. (The
default, CPU-based load would block dispatch on a small machine that renders faces by
design.)
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import importlib
import logging
import os
import signal
import threading
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from livekit import rtc
from livekit.agents import AgentServer, AutoSubscribe, JobContext, JobExecutorType, JobProcess
from livekit.agents.types import ATTRIBUTE_PUBLISH_ON_BEHALF
from livekit.agents.voice.avatar import DataStreamAudioReceiver
from livekit.agents.worker import WorkerPermissions
from livekit.protocol import models
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .._config import DEFAULT_AVATAR_AGENT_NAME
from .._runtime import build_face, start_publisher
from .._render.background import BackgroundError, parse_background
from .._pipeline import FacePipeline, limit_blas_threads, load_pipeline
from .._pipeline import prewarm as prewarm_face
from .._speech_stream import codec_attributes
from .follow import follow_conversation
from .heartbeat import Heartbeat
from .protocol import LEAVE_ATTRIBUTE, PROTOCOL_VERSION, AvatarJobRequest, server_lists
from .supervisor import DUE, REGISTERED, RETIRE, Slots

logger = logging.getLogger("livekit_avatar_plugin.worker")

_WATCH_POLL_S = 0.1
# Asking the server is an HTTP request per avatar per poll; every 0.5 s still lets the
# avatar leave within ~1 s of an agent that left without removing it.
_SERVER_POLL_S = 0.5
# The agent dispatched this job while in the room; if it is not there by then, it left.
_AGENT_ARRIVAL_S = 10.0
# glibc's malloc arenas for a worker process (default: 8 per core): each job runs on
# threads of its own, and memory they free stays scattered over many arenas (docs/benchmarks.md, "Churn").
_MALLOC_ARENAS = 2
_M_ARENA_MAX = -8  # mallopt's parameter, from glibc's malloc.h


class AvatarWorkerOptions(BaseModel):
    """Options of ``livekit-avatar worker``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    agent_name: str = Field(DEFAULT_AVATAR_AGENT_NAME, min_length=1, max_length=128)
    capacity: int = Field(4, ge=1, le=64, description="avatars this process renders at once")
    face_pipeline: str | None = Field(
        None,
        pattern=r"^[\w.]+:[\w.]+$",
        description="module:attr of a FacePipeline (instance, class or factory) to use "
        "instead of the shipped models",
    )
    avatar: str = Field("default", description="avatar to load at start-up")
    url: str | None = None
    api_key: str | None = None
    api_secret: str | None = None
    http_port: int = Field(0, ge=0, le=65535, description="health endpoint; 0 picks a free port")
    server_target_load: float = Field(
        0.7,
        gt=0,
        le=1.0,
        description="the server's agents.target_load: the load at which it stops dispatching",
    )
    drain_timeout_s: float = Field(
        60.0, ge=0, description="on SIGTERM/SIGINT, how long running avatars may finish"
    )
    max_jobs: int | None = Field(
        None,
        ge=1,
        description="jobs a worker process takes before a fresh one takes over (run by "
        "the supervisor); None: one process serves for ever",
    )


_custom_pipelines: dict[str, FacePipeline] = {}


def resolve_face_pipeline(spec: str) -> FacePipeline:
    """Import ``module:attr``; a class or factory is called once per process."""
    cached = _custom_pipelines.get(spec)
    if cached is not None:
        return cached
    module_name, _, attr = spec.partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"face pipeline {spec!r} cannot be imported: {exc}") from exc
    if callable(obj) and (isinstance(obj, type) or not isinstance(obj, FacePipeline)):
        try:
            obj = obj()
        except Exception as exc:
            raise ValueError(f"face pipeline {spec!r} could not be created: {exc!r}") from exc
    if not isinstance(obj, FacePipeline):
        raise ValueError(
            f"face pipeline {spec!r} has no create_motion() and create_renderer(width, height)"
        )
    _custom_pipelines[spec] = obj
    return obj


def _pipeline_for(options: AvatarWorkerOptions, avatar: str, background: Any = "keep") -> FacePipeline:
    if options.face_pipeline:
        return resolve_face_pipeline(options.face_pipeline)
    return load_pipeline(avatar, background)


# Jobs connect one at a time: simultaneous connects can hang in LiveKit's FFI on a busy
# machine (docs/benchmarks.md, "Measurements behind the code").
_connect_gate = threading.Lock()
_CONNECT_GATE_WAIT_S = 20.0


def limit_malloc_arenas() -> bool:
    """Cap glibc's malloc arenas for this worker process; call it before its threads start.
    ``MALLOC_ARENA_MAX`` in the environment wins. Returns whether the cap was set."""
    if "MALLOC_ARENA_MAX" in os.environ:
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc
        return False
    return bool(mallopt(_M_ARENA_MAX, _MALLOC_ARENAS))


async def _connect_one_at_a_time(ctx: JobContext) -> None:
    got = await asyncio.to_thread(_connect_gate.acquire, True, _CONNECT_GATE_WAIT_S)
    try:
        await ctx.connect(auto_subscribe=AutoSubscribe.SUBSCRIBE_NONE)
    finally:
        if got:
            _connect_gate.release()


def _load(slots: Slots, options: AvatarWorkerOptions) -> float:
    used = min(1.0, slots.taken() / options.capacity)
    return options.server_target_load * used


class AvatarWorker:
    """Builds and runs the ``AgentServer`` that serves avatar jobs."""

    def __init__(
        self,
        options: AvatarWorkerOptions,
        *,
        slots: Slots | None = None,
        supervisor: Connection | None = None,
    ) -> None:
        self.options = options
        # Slots held from a job's acceptance to its end, shared with the other generations
        # of this machine's worker when a supervisor runs them.
        self._slots = slots or Slots(options.capacity)
        self._supervisor = supervisor
        self._accepted = 0
        self.server = AgentServer(
            job_executor_type=JobExecutorType.THREAD,
            # Full exactly at capacity. The idle pool also sizes the worker's estimate of
            # one job's load while none runs (threshold / idle): one slot per job.
            load_threshold=options.server_target_load,
            num_idle_processes=options.capacity,
            load_fnc=lambda server: _load(self._slots, options),
            setup_fnc=self._setup,
            # Least privilege: publish the face and talk to the agent; never subscribe.
            permissions=WorkerPermissions(
                can_publish=True,
                can_subscribe=False,
                can_publish_data=True,
                can_update_metadata=False,
                can_publish_sources=[models.TrackSource.CAMERA, models.TrackSource.MICROPHONE],
            ),
            ws_url=options.url,
            api_key=options.api_key,
            api_secret=options.api_secret,
            port=options.http_port,
        )
        self.server.rtc_session(
            self._run_job, agent_name=options.agent_name, on_request=self._on_request
        )

    def prewarm(self) -> None:
        """Load the face pipeline now, before any job (the setup function then finds it),
        framed for the default output size."""
        limit_blas_threads()
        if self.options.face_pipeline:
            _pipeline_for(self.options, self.options.avatar)
        else:
            prewarm_face(self.options.avatar)

    def _setup(self, proc: JobProcess) -> None:
        self.prewarm()

    async def _on_request(self, req: Any) -> None:
        try:
            request = AvatarJobRequest.model_validate_json(req.job.metadata or "{}")
        except ValidationError as exc:
            logger.error("rejecting job %s: its metadata is not an avatar request: %s", req.id, exc)
            await req.reject(terminate=True)
            return
        if request.version != PROTOCOL_VERSION:
            logger.error(
                "rejecting job %s: protocol version %s, this worker speaks %s",
                req.id, request.version, PROTOCOL_VERSION,
            )  # fmt: skip
            await req.reject(terminate=True)
            return
        if not self.options.face_pipeline and request.avatar != "default":
            if not Path(request.avatar).exists():
                logger.error("rejecting job %s: no avatar package %s here", req.id, request.avatar)
                await req.reject(terminate=True)
                return
        try:
            parse_background(request.background)
        except BackgroundError as exc:
            logger.error("rejecting job %s: %s", req.id, exc)
            await req.reject(terminate=True)
            return
        # LiveKit's own availability check compares a float load with the threshold, and
        # with four slots and three jobs plus one reserved it sums to 0.6999... < 0.7: a
        # burst of requests got a fifth job onto a worker of capacity 4. Counting jobs is
        # exact. Declining (not terminating) lets the server offer the job elsewhere.
        if not self._slots.take():
            logger.info(
                "declining job %s: all %d slots are taken", req.id, self.options.capacity
            )
            await req.reject(terminate=False)
            return
        try:
            await req.accept(
                identity=request.avatar_identity,
                name=request.avatar_name,
                attributes={
                    ATTRIBUTE_PUBLISH_ON_BEHALF: request.agent_identity,
                    **codec_attributes(),
                },
            )
        except BaseException:
            self._slots.free()  # never assigned or never launched: no job will free it
            raise
        self._accepted += 1
        if self.options.max_jobs and self._accepted >= self.options.max_jobs:
            # Said again on each job after: if a successor failed to start, try another.
            self._tell_supervisor(DUE)

    def _tell_supervisor(self, message: str) -> None:
        if self._supervisor is not None:
            with contextlib.suppress(OSError):
                self._supervisor.send(message)

    async def _run_job(self, ctx: JobContext) -> None:
        try:
            await self._render_for_agent(ctx)
        finally:
            self._slots.free()

    async def _render_for_agent(self, ctx: JobContext) -> None:
        started_at = time.monotonic()
        request = AvatarJobRequest.model_validate_json(ctx.job.metadata)
        await _connect_one_at_a_time(ctx)
        pipeline = await asyncio.to_thread(_pipeline_for, self.options, request.avatar, request.background)
        generator = await build_face(pipeline, video=request.video, sample_rate=request.audio_sample_rate)
        ended = asyncio.get_running_loop().create_future()

        def end(reason: str) -> None:
            if not ended.done():
                ended.set_result(reason)

        # Metrics are logged here, where the frames are made; the agent's process has
        # its own avatar metrics from LiveKit (join time, playback latency).
        publisher = await start_publisher(
            ctx.room,
            generator,
            audio_receiver=DataStreamAudioReceiver(ctx.room, sender_identity=request.agent_identity),
            speech_sender=request.agent_identity,
            video=request.video,
            video_delay_s=request.video_delay_ms / 1000.0,
            started_at=started_at,
            emit_metrics=lambda _: None,
            on_died=lambda why: end(f"avatar stopped: {why}"),
        )
        unfollow = follow_conversation(ctx.room, request, publisher.set_state)
        logger.info(
            "avatar %s rendering for agent %s in room %s",
            request.avatar_identity, request.agent_identity, ctx.room.name,
        )  # fmt: skip
        watches = [
            asyncio.create_task(_watch_room(ctx.room, request, started_at, end)),
            asyncio.create_task(_ask_server_for_agent(ctx, request, end)),
            asyncio.create_task(Heartbeat(ctx.room, request, publisher, ctx.api).run()),
        ]
        reason = await ended
        unfollow()
        for task in watches:
            task.cancel()
        await asyncio.gather(*watches, return_exceptions=True)
        logger.info("avatar %s leaving room %s: %s", request.avatar_identity, ctx.room.name, reason)
        # Leave first, tidy up after: the room should not see an avatar talking to no one.
        with contextlib.suppress(Exception):
            await ctx.room.disconnect()
        await publisher.aclose(reason)
        ctx.shutdown(reason)

    async def run(self) -> None:
        """Register with LiveKit and serve until SIGTERM/SIGINT (a second one stops at once)
        or, under a supervisor, until told to retire: then finish the avatars and return."""
        self.prewarm()
        loop = asyncio.get_running_loop()
        signalled: asyncio.Queue[int] = asyncio.Queue()
        signals = (signal.SIGINT, signal.SIGTERM)
        for sig in signals:
            loop.add_signal_handler(sig, signalled.put_nowait, sig)
        retire = loop.create_future()
        if self._supervisor is not None:
            loop.add_reader(self._supervisor.fileno(), self._on_supervisor, retire)
            self.server.on("worker_registered", lambda *_: self._tell_supervisor(REGISTERED))
        serving = asyncio.create_task(self.server.run(devmode=False), name="avatar-worker")
        first = asyncio.create_task(signalled.get())
        try:
            await asyncio.wait({serving, first, retire}, return_when=asyncio.FIRST_COMPLETED)
            if not serving.done():
                drain = asyncio.create_task(self.server.drain(timeout=None))
                if retire.done() and not first.done():
                    # No deadline: each avatar ends with its conversation (or max_duration_s).
                    logger.info(
                        "retiring after %d jobs: finishing %d avatar(s)",
                        self._accepted, len(self.server.active_jobs),
                    )  # fmt: skip
                    await asyncio.wait({drain, first}, return_when=asyncio.FIRST_COMPLETED)
                if first.done() and signalled.empty() and not drain.done():
                    logger.info("draining: finishing %d avatar(s)", len(self.server.active_jobs))
                    again = asyncio.create_task(signalled.get())
                    await asyncio.wait(
                        {drain, again},
                        timeout=self.options.drain_timeout_s,
                        return_when=asyncio.FIRST_COMPLETED,
                    )
                    again.cancel()
                drain.cancel()
        finally:
            first.cancel()
            for sig in signals:
                loop.remove_signal_handler(sig)
            if self._supervisor is not None:
                loop.remove_reader(self._supervisor.fileno())
            await self.server.aclose()
            if serving.done() and not serving.cancelled() and serving.exception():
                raise serving.exception()  # type: ignore[misc]

    def _on_supervisor(self, retire: asyncio.Future[None]) -> None:
        assert self._supervisor is not None
        try:
            message = self._supervisor.recv()
        except (EOFError, OSError):
            message = RETIRE  # the supervisor is gone (the kernel stops us if it died)
            asyncio.get_running_loop().remove_reader(self._supervisor.fileno())
        if message == RETIRE and not retire.done():
            retire.set_result(None)


async def _ask_server_for_agent(ctx: JobContext, request: AvatarJobRequest, end: Any) -> None:
    """End the job once the server no longer lists the agent: asking it directly lets the
    avatar leave well before the room's own departure event."""
    while True:
        await asyncio.sleep(_SERVER_POLL_S)
        try:
            if not await server_lists(ctx.api, ctx.room.name, request.agent_identity):
                end(f"agent {request.agent_identity} left the room")
                return
        except Exception as exc:  # noqa: BLE001 - the room watch still covers us
            logger.debug("asking the server for the agent: %r", exc)


async def _watch_room(
    room: rtc.Room, request: AvatarJobRequest, started_at: float, end: Any
) -> None:
    """End the job when the agent leaves or asks the avatar to, the room drops, or the
    session's cap is reached.

    Polled: the room's events are not always emitted for a departure, and an avatar left
    talking to nobody keeps a worker slot busy.
    """
    seen = False
    while True:
        await asyncio.sleep(_WATCH_POLL_S)
        now = time.monotonic()
        if room.connection_state == rtc.ConnectionState.CONN_DISCONNECTED:
            end("the avatar's connection closed")
            return
        if LEAVE_ATTRIBUTE in room.local_participant.attributes:
            end(f"agent {request.agent_identity} asked the avatar to leave")
            return
        present = request.agent_identity in room.remote_participants
        seen = seen or present
        if seen and not present:
            end(f"agent {request.agent_identity} left the room")
            return
        if not seen and now - started_at > _AGENT_ARRIVAL_S:
            end(f"agent {request.agent_identity} is not in the room")
            return
        if now - started_at > request.max_duration_s:
            end(f"max_duration_s={request.max_duration_s:g} reached")
            return
