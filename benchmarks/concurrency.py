"""How many avatars one machine renders at once: N rooms, each with a speaking agent.

Against a real ``livekit-server`` on loopback. For each N a fresh ``livekit-avatar worker``
process (the REAL default face: lip-sync model + renderer, 512x512 at 25 fps, real VP8
encoding) serves N rooms through dispatch mode. In each room an agent speaks without
pause (scripted LLM; speech synthesised once by the local TTS, then replayed), and a
viewer subscribes to the avatar.

The viewers must cost (almost) nothing, or they measure themselves: all N agents and N
viewers run in this one Python process, on the same 2 cores as the worker. So a viewer
does not read frames in Python: it polls its WebRTC receive statistics for the avatar's
video track every 0.5 s (``Track.get_stats()``, ``inbound-rtp`` ``framesDecoded`` and
``framesReceived``, timed by the stats' own clock). libwebrtc decodes every received frame
whether or not the application reads it, so ``framesDecoded`` is what a viewer's screen
gets. Only session 1's viewer also reads the media in Python (a 32x32 luma thumbnail per
frame and the loudness of every audio frame) for the A/V offset; its Python frame rate is
kept as a cross-check of the stats (``fps_sampled_python``).

Per N it reports:
* delivered fps: frames decoded per second at each viewer over the measuring window
  (min / median over sessions); also frames received (before decoding) and the worker's
  own count of frames it captured into WebRTC (``worker_sent_fps``, from its metrics log),
  which tells a slow sender from a lossy path;
* A/V offset (session 1 only): the lag that best aligns the received audio's loudness
  with the received mouth motion (positive: sound after picture). It is what an SDK
  viewer without A/V sync sees; the lip-sync model's own timing is part of it;
* CPU per session: the worker process's CPU time / wall time / N, in cores (psutil); the
  agents + viewers process (the harness) and the server are reported apart, and so is the
  rest of the machine (``other_cpu_cores``: other engineers' work on this shared box);
* RSS per session: (worker RSS with N avatars - its RSS with the models loaded and no
  avatar) / N; the worker keeps one copy of the models for all its avatars;
* time to first frame: the agent joining its room and calling ``AvatarSession.start()``
  until the viewer's stats first count a decoded frame (polled every 0.1 s until then;
  dispatch, worker job start, join, publish, first keyframe); ``join_s`` is the part until
  ``start()`` returned;
* the load average before and after, and the worker's exit code if it died.

Writes ``docs/img/bench_concurrency.json`` and the plots ``bench_fps.png`` and
``bench_cpu.png``.

    .venv/bin/python benchmarks/concurrency.py [--sessions 1,2,3,4,5] [--duration 30]
        [--avatar PACKAGE]   (a footage avatar from `livekit-avatar create CLIP`, say)
        [--out '']           (no JSON or plots: keep the default face's figures in docs/)
"""

from __future__ import annotations

import argparse
import ast
import asyncio
import json
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from livekit import rtc  # noqa: E402
from livekit.agents import AgentSession  # noqa: E402

from livekit_avatar_plugin import AvatarSession, VideoOptions  # noqa: E402
from livekit_avatar_plugin._native_logs import stop_forwarding_native_logs  # noqa: E402
from livekit_avatar_plugin._audio.local_tts import synthesize  # noqa: E402
from livekit_avatar_plugin.keyless import PcmTTS  # noqa: E402
from livekit_avatar_plugin.local_server import LocalLiveKitServer, ServerInfo  # noqa: E402
from tests.av_harness import Subscriber  # noqa: E402
from tests.conftest import WorkerProcess  # noqa: E402
from tests.rooms import agent_with_avatar  # noqa: E402

IMG = ROOT / "docs" / "img"
SPEECH = (
    "The quick brown fox jumps over the lazy dog while the band plays on. "
    "Peter Piper picked a peck of pickled peppers, and five wizards quietly jumped. "
    "We measure how many talking faces one small machine can keep at twenty five frames."
)
SIZE = 512  # the avatar's published width and height
GRID = 32  # the sampled viewer keeps a GRID x GRID luma thumbnail of each frame
POLL_S = 0.5  # how often a viewer reads its WebRTC receive statistics


class ReplayTTS(PcmTTS):
    """Speech synthesised once by the local TTS, replayed for every reply (no TTS CPU)."""

    def __init__(self, pcm: np.ndarray, sample_rate: int) -> None:
        super().__init__(sample_rate=sample_rate)
        self.pcm = pcm

    def pcm_for(self, text: str) -> tuple[np.ndarray, int]:
        return self.pcm, self.sample_rate


class Viewer(Subscriber):
    """A viewer that counts what its WebRTC stack decodes, at almost no cost of its own.

    Delivered frames come from the subscriber's ``inbound-rtp`` statistics of the avatar's
    video track (``framesDecoded``, ``framesReceived``; ``Track.get_stats()``), polled every
    ``POLL_S``: libwebrtc decodes every received frame whether or not the application reads
    it, so the count is what a viewer's screen would get, and no frame crosses into Python.
    Only a ``sampled`` viewer also reads the media in Python: a GRID x GRID luma thumbnail
    per decoded frame and the loudness of every audio frame, for the A/V offset (one such
    viewer per run keeps the harness's cost flat in N).
    """

    def __init__(
        self, info: ServerInfo, room_name: str, avatar_identity: str, *, sampled: bool = False
    ) -> None:
        super().__init__(info, room_name, avatar_identity)
        self.sampled = sampled
        self.loudness: list[tuple[float, float]] = []  # (arrival, rms)
        self.thumbs: list[tuple[float, np.ndarray]] = []  # (arrival, GRIDxGRID luma)
        # (monotonic at the poll, stats timestamp in s (it is in us), framesDecoded,
        # framesReceived, width of the last decoded frame: which simulcast layer arrives)
        self.counts: list[tuple[float, float, int, int, int]] = []
        self.first_frame_at: float | None = None

    async def _read_audio(self, track: rtc.Track) -> None:
        if not self.sampled:
            return
        async for ev in rtc.AudioStream(track, sample_rate=24000, num_channels=1):
            pcm = np.frombuffer(ev.frame.data, dtype=np.int16).astype(np.float32)
            self.loudness.append((time.monotonic(), float(np.sqrt(np.mean(pcm**2))) if pcm.size else 0.0))

    async def _read_video(self, track: rtc.Track) -> None:
        if self.sampled:
            self._tasks.append(asyncio.create_task(self._thumbnails(track)))
        while True:
            # Fast until the first frame (time to first frame to ~0.1 s), then slow.
            await asyncio.sleep(0.1 if self.first_frame_at is None else POLL_S)
            for entry in await track.get_stats():
                if entry.WhichOneof("stats") != "inbound_rtp":
                    continue
                rtp = entry.inbound_rtp
                now = time.monotonic()
                decoded = rtp.inbound.frames_decoded
                if decoded and self.first_frame_at is None:
                    self.first_frame_at = now
                self.counts.append(
                    (now, rtp.rtc.timestamp / 1e6, decoded, rtp.inbound.frames_received, rtp.inbound.frame_width)
                )

    async def _thumbnails(self, track: rtc.Track) -> None:
        async for ev in rtc.VideoStream(track):
            now = time.monotonic()
            frame = ev.frame
            if frame.type != rtc.VideoBufferType.I420:
                frame = frame.convert(rtc.VideoBufferType.I420)
            w, h = frame.width, frame.height
            luma = np.frombuffer(frame.data, dtype=np.uint8, count=w * h).reshape(h, w)
            ys = np.linspace(0, h - 1, GRID).astype(int)
            xs = np.linspace(0, w - 1, GRID).astype(int)
            self.thumbs.append((now, luma[np.ix_(ys, xs)].astype(np.float32)))

    def fps(self, after: float, before: float, *, column: int = 2) -> float:
        """Frames decoded (column 2) or received (3) per second between two polls inside
        the window, timed by the stats' own clock."""
        inside = [c for c in self.counts if after <= c[0] <= before]
        if len(inside) < 2 or inside[-1][1] <= inside[0][1]:
            return 0.0
        return (inside[-1][column] - inside[0][column]) / (inside[-1][1] - inside[0][1])

    def widths(self, after: float, before: float) -> list[int]:
        """Width of the decoded video at each poll in the window (the simulcast layer)."""
        return [c[4] for c in self.counts if after <= c[0] <= before]

    def trim(self, keep_after: float) -> None:
        """Drop records older than ``keep_after`` (flat memory on long runs)."""
        self.thumbs = [x for x in self.thumbs if x[0] >= keep_after]
        self.loudness = [x for x in self.loudness if x[0] >= keep_after]
        self.counts = [x for x in self.counts if x[0] >= keep_after]


def frame_rate(times: list[float], after: float, before: float) -> float:
    inside = [t for t in times if after <= t <= before]
    return (len(inside) - 1) / (inside[-1] - inside[0]) if len(inside) > 1 else 0.0


def av_lag_ms(viewer: Viewer, after: float, before: float) -> float | None:
    """Lag (ms) that best aligns received loudness with received mouth motion.

    The mouth is found as the thumbnail cells that change most over the window; their
    mean luma over time is correlated with the audio envelope at lags of +-300 ms.
    """
    thumbs = [(t, g) for t, g in viewer.thumbs if after <= t <= before]
    audio = [(t, v) for t, v in viewer.loudness if after - 0.5 <= t <= before + 0.5]
    if len(thumbs) < 50 or len(audio) < 100:
        return None
    tv = np.array([t for t, _ in thumbs])
    cube = np.stack([g for _, g in thumbs])
    variance = cube.var(axis=0).ravel()
    cells = np.argsort(variance)[-12:]
    mouth = cube.reshape(len(thumbs), -1)[:, cells].mean(axis=1)
    ta = np.array([t for t, _ in audio])
    va = np.array([v for _, v in audio])
    grid = np.arange(tv[0] + 0.3, tv[-1] - 0.3, 0.01)
    m = np.interp(grid, tv, mouth)
    m = (m - m.mean()) / (m.std() + 1e-9)
    best, best_lag = 0.0, None
    for lag_ms in range(-300, 301, 10):
        a = np.interp(grid + lag_ms / 1000.0, ta, va)
        a = (a - a.mean()) / (a.std() + 1e-9)
        c = abs(float(np.mean(a * m)))  # mouth opening may darken or lighten the cells
        if c > best:
            best, best_lag = c, float(lag_ms)
    return best_lag


@dataclass
class Room:
    name: str
    agent_room: rtc.Room
    session: AgentSession
    avatar: AvatarSession
    viewer: Viewer
    started_at: float
    joined_s: float = 0.0
    speaker: asyncio.Task | None = None


@dataclass
class RunResult:
    sessions: int
    fps: list[float]
    av_lag_ms: list[float]
    first_frame_s: list[float]
    join_s: list[float]
    worker_cpu_cores: float
    driver_cpu_cores: float
    server_cpu_cores: float
    machine_cpu_percent: float
    worker_rss_idle_mb: float
    worker_rss_mb: float
    load_average: tuple[float, float, float]
    timeline: list[dict[str, Any]] = field(default_factory=list)
    fps_received: list[float] = field(default_factory=list)  # frames received (before decode)
    # Per session, the widths of the decoded video over the window: the layer each viewer got.
    widths: list[list[int]] = field(default_factory=list)
    fps_sampled_python: float | None = None  # the sampled viewer's rate, counted in Python
    load_average_after: tuple[float, float, float] = (0.0, 0.0, 0.0)
    other_cpu_cores: float = 0.0  # the rest of the machine: other engineers' work
    worker_exit_code: int | None = None  # set when the worker process died during the run
    worker_log: str = ""
    # The worker's own metric: frames each avatar captured into WebRTC per second, per
    # metrics window (30 s, or up to the close: warm-up and start included).
    worker_sent_fps: list[float] = field(default_factory=list)

    @property
    def rss_per_session_mb(self) -> float:
        return (self.worker_rss_mb - self.worker_rss_idle_mb) / self.sessions

    def summary(self) -> dict[str, Any]:
        med = lambda xs: statistics.median(xs) if xs else float("nan")  # noqa: E731
        return {
            "sessions": self.sessions,
            "fps_min": min(self.fps),
            "fps_median": med(self.fps),
            "av_lag_ms_median": med(self.av_lag_ms),
            "first_frame_s_median": med(self.first_frame_s),
            "join_s_median": med(self.join_s),
            "worker_cpu_per_session_cores": self.worker_cpu_cores / self.sessions,
            "driver_cpu_per_session_cores": self.driver_cpu_cores / self.sessions,
            "server_cpu_cores": self.server_cpu_cores,
            "machine_cpu_percent": self.machine_cpu_percent,
            "worker_rss_idle_mb": self.worker_rss_idle_mb,
            "worker_rss_mb": self.worker_rss_mb,
            "rss_per_session_mb": self.rss_per_session_mb,
            "load_average_before": self.load_average,
            "load_average_after": self.load_average_after,
            "other_cpu_cores": self.other_cpu_cores,
            "fps_received_min": min(self.fps_received) if self.fps_received else float("nan"),
            # Share of the viewers' polls that found the full 512x512 layer decoded.
            "full_size_share": (
                sum(w == SIZE for ws in self.widths for w in ws) / sum(len(ws) for ws in self.widths)
                if any(self.widths) else float("nan")
            ),
            "widths_seen": sorted({w for ws in self.widths for w in ws}),
            "fps_sampled_python": self.fps_sampled_python,
            "worker_sent_fps_min": min(self.worker_sent_fps) if self.worker_sent_fps else float("nan"),
            "worker_exit_code": self.worker_exit_code,
            "worker_log": self.worker_log,
        }


async def _speak_forever(session: AgentSession) -> None:
    while True:
        await session.say("speech").wait_for_playout()


async def _open_room(
    info: ServerInfo,
    agent_name: str,
    speech: ReplayTTS,
    quality: str,
    *,
    codec: str = "vp8",
    sampled: bool = False,
    avatar: str = "default",
) -> Room:
    name = f"bench-{uuid.uuid4().hex[:8]}"
    started = time.monotonic()
    agent_room, session, avatar = await agent_with_avatar(
        info,
        name,
        replies=("speech",),
        tts=speech,
        face_pipeline=None,
        avatar=avatar,
        mode="dispatch",
        agent_name=agent_name,
        video=VideoOptions(quality=quality, width=SIZE, height=SIZE, fps=25, codec=codec),
        dispatch_timeout_s=30.0,
        idle_timeout_s=None,
        # The agents stand in for agent workers that would run elsewhere. LiveKit's
        # transcript pacing estimates each reply's speaking rate from its audio (an STFT,
        # ~0.1 core per agent while a reply streams in); four agents starting replies
        # together took the machine's last spare core from the avatar worker.
        sync_transcription=False,
    )
    joined = time.monotonic() - started
    viewer = Viewer(info, name, avatar.avatar_identity, sampled=sampled)
    await viewer.connect()
    room = Room(name, agent_room, session, avatar, viewer, started, joined)
    room.speaker = asyncio.create_task(_speak_forever(session))
    return room


async def _close_room(room: Room) -> None:
    if room.speaker is not None:
        room.speaker.cancel()
    for step in (room.session.aclose, room.avatar.aclose, room.viewer.aclose, room.agent_room.disconnect):
        try:
            await asyncio.wait_for(step(), 10)
        except Exception:  # noqa: BLE001 - tear down the rest regardless
            pass


def _cpu_s(proc: psutil.Process) -> float:
    t = proc.cpu_times()
    return t.user + t.system + t.children_user + t.children_system


def _machine_busy_s() -> float:
    """CPU seconds the whole machine has spent busy (all cores)."""
    t = psutil.cpu_times()._asdict()
    # Linux counts guest time inside user time already.
    idle = ("idle", "iowait", "guest", "guest_nice")
    return sum(v for k, v in t.items() if k not in idle)


def _rss_mb(proc: psutil.Process) -> float:
    return proc.memory_info().rss / 2**20


async def run_sessions(
    info: ServerInfo,
    server_pid: int | None,
    n: int,
    *,
    duration: float,
    warmup: float = 5.0,
    sample_every: float | None = None,
    quality: str = "auto",
    codec: str = "vp8",
    avatar: str = "default",
) -> RunResult:
    """N concurrent rooms on one fresh worker process; measures over ``duration`` seconds."""
    # Like the worker, the harness keeps LiveKit's native debug log out of Python: its
    # agents and viewers stand in for processes on other machines, and ~1900 records a
    # second crossing into this one cost the avatars CPU they would have elsewhere.
    stop_forwarding_native_logs()
    load_average = psutil.getloadavg()
    pcm, rate = await asyncio.to_thread(synthesize, SPEECH)
    speech = ReplayTTS(pcm, rate)
    agent_name = f"bench-{uuid.uuid4().hex[:6]}"
    log_path = Path(tempfile.gettempdir()) / f"{agent_name}-worker.log"
    worker = WorkerProcess(
        info, agent_name=agent_name, capacity=n, face_pipeline=None, avatar=avatar, log_path=log_path
    )
    rooms: list[Room] = []
    try:
        await asyncio.to_thread(worker.wait_registered, 120.0)
        wproc = psutil.Process(worker.serving_pid())  # the rendering process, not its supervisor
        await asyncio.sleep(2.0)
        rss_idle = _rss_mb(wproc)
        # One sampled viewer (thumbnails + loudness, for the A/V offset); the rest only count.
        rooms = list(
            await asyncio.gather(
                *(_open_room(info, agent_name, speech, quality, codec=codec, sampled=i == 0, avatar=avatar)
                  for i in range(n))
            )
        )
        await asyncio.sleep(warmup)
        me = psutil.Process()
        server = psutil.Process(server_pid) if server_pid else None

        def cpu_s() -> tuple[float, float, float]:  # worker, harness, server
            return (_cpu_s(wproc), _cpu_s(me), _cpu_s(server) if server else 0.0)

        psutil.cpu_percent()
        t0 = time.monotonic()
        cpu0 = cpu_s()
        timeline: list[dict[str, Any]] = []
        end = t0 + duration
        cpu_prev, busy_prev = cpu0, _machine_busy_s()
        while time.monotonic() < end:
            step = min(sample_every or duration, end - time.monotonic())
            t_prev = time.monotonic()
            await asyncio.sleep(max(step, 0.0))
            if sample_every:
                now = time.monotonic()
                cpu_now = cpu_s()
                busy_now = _machine_busy_s()
                worker_c, harness_c, server_c = (
                    (b - a) / (now - t_prev) for a, b in zip(cpu_prev, cpu_now)
                )
                busy = (busy_now - busy_prev) / (now - t_prev)
                fps = [r.viewer.fps(t_prev, now) for r in rooms]
                timeline.append(
                    {
                        "t_s": now - t0,
                        "worker_rss_mb": _rss_mb(wproc),
                        "fps": fps,
                        # Whether a dip is the worker or the machine: the worker's CPU
                        # per frame rises when the host gives it slower cores, and
                        # "other" is everything outside the benchmark.
                        "worker_cores": worker_c,
                        "worker_ms_per_frame": 1000 * worker_c / max(sum(fps), 1e-6),
                        "harness_cores": harness_c,
                        "server_cores": server_c,
                        "other_cores": max(busy - worker_c - harness_c - server_c, 0.0),
                        "load_average": psutil.getloadavg()[0],
                    }
                )
                cpu_prev, busy_prev = cpu_now, busy_now
                for r in rooms:  # keep the viewers' memory flat on long runs
                    r.viewer.trim(now - duration_keep(duration))
        t1 = time.monotonic()
        cpu1 = cpu_s()
        machine = psutil.cpu_percent()
        load_after = psutil.getloadavg()
        rss = _rss_mb(wproc)
        wall = t1 - t0
        window = (max(t0, t1 - 30.0), t1)
        lags = [av_lag_ms(r.viewer, *window) for r in rooms if r.viewer.sampled]
        cores = [(c1 - c0) / wall for c0, c1 in zip(cpu0, cpu1)]
        result = RunResult(
            sessions=n,
            fps=[r.viewer.fps(*window) for r in rooms],
            fps_received=[r.viewer.fps(*window, column=3) for r in rooms],
            widths=[r.viewer.widths(*window) for r in rooms],
            fps_sampled_python=frame_rate([t for t, _ in rooms[0].viewer.thumbs], *window),
            av_lag_ms=[lag for lag in lags if lag is not None],
            first_frame_s=[
                r.viewer.first_frame_at - r.started_at if r.viewer.first_frame_at else float("nan")
                for r in rooms
            ],
            join_s=[r.joined_s for r in rooms],
            worker_cpu_cores=cores[0],
            driver_cpu_cores=cores[1],
            server_cpu_cores=cores[2],
            machine_cpu_percent=machine,
            other_cpu_cores=max(machine / 100 * psutil.cpu_count() - sum(cores), 0.0),
            load_average_after=load_after,
            worker_exit_code=worker.proc.poll(),
            worker_log=str(log_path),
            worker_rss_idle_mb=rss_idle,
            worker_rss_mb=rss,
            load_average=load_average,
            timeline=timeline,
        )
    finally:
        await asyncio.gather(*(_close_room(r) for r in rooms))
        await asyncio.to_thread(worker.stop)
    result.worker_sent_fps = _worker_sent_fps(worker.log())
    return result


def _worker_sent_fps(log: str) -> list[float]:
    """``delivered_fps`` of the worker's periodic and closing metrics records."""
    rates = []
    for line in log.splitlines():
        _, marker, record = line.partition("avatar metrics ")
        if marker and ("'periodic'" in record or "'closed'" in record):
            rates.append(float(ast.literal_eval(record)["delivered_fps"]))
    return rates


def duration_keep(duration: float) -> float:
    """How much of the viewers' record to keep on long runs (the analysis window)."""
    return min(duration, 40.0)


def plot(results: list[dict[str, Any]], out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ns = [r["sessions"] for r in results]
    paths = []
    fig, ax = plt.subplots(figsize=(6, 4), constrained_layout=True)
    ax.plot(ns, [r["fps_min"] for r in results], "o-", label="slowest session")
    ax.plot(ns, [r["fps_median"] for r in results], "s--", label="median session")
    ax.plot(ns, [r["worker_sent_fps_min"] for r in results], "^:", label="slowest, as sent by the worker")
    ax.axhline(24, color="red", lw=0.8, ls=":", label="target 24 fps")
    ax.set(xlabel="concurrent avatar sessions", ylabel="fps decoded by the viewer",
           title="Delivered frame rate vs sessions (512x512, 25 fps)", ylim=(0, 27), xticks=ns)  # fmt: skip
    ax.legend(loc="lower left")
    paths.append(out / "bench_fps.png")
    fig.savefig(paths[-1], dpi=110)
    fig, ax = plt.subplots(figsize=(6, 4), constrained_layout=True)
    per = [r["worker_cpu_per_session_cores"] * 100 for r in results]
    drv = [r["driver_cpu_per_session_cores"] * 100 for r in results]
    ax.bar(ns, per, label="avatar worker (render + encode)")
    ax.bar(ns, drv, bottom=per, label="agent + viewer (test harness)")
    ax.set(xlabel="concurrent avatar sessions", ylabel="% of one core per session",
           title="CPU per session vs sessions", xticks=ns)  # fmt: skip
    ax.legend()
    paths.append(out / "bench_cpu.png")
    fig.savefig(paths[-1], dpi=110)
    return paths


def table(results: list[dict[str, Any]]) -> str:
    rows = [("| N | load avg before -> after | fps min / median (decoded) | worker sent fps min "
             "| A/V offset | worker CPU / session | harness CPU / session | other work on the machine "
             "| RSS / session | first frame |"),
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]  # fmt: skip
    for r in results:
        died = f" (worker exited {r['worker_exit_code']})" if r.get("worker_exit_code") is not None else ""
        rows.append(
            f"| {r['sessions']} | {r['load_average_before'][0]:.1f} -> {r['load_average_after'][0]:.1f} "
            f"| {r['fps_min']:.1f} / {r['fps_median']:.1f}{died} | {r['worker_sent_fps_min']:.1f} "
            f"| {r['av_lag_ms_median']:+.0f} ms | {r['worker_cpu_per_session_cores']:.2f} core "
            f"| {r['driver_cpu_per_session_cores']:.2f} core | {r['other_cpu_cores']:.2f} core "
            f"| {r['rss_per_session_mb']:.0f} MB | {r['first_frame_s_median']:.1f} s |"
        )
    return "\n".join(rows)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", default="1,2,3,4,5", help="comma list of N")
    parser.add_argument("--duration", type=float, default=30.0, help="seconds measured per N")
    parser.add_argument("--warmup", type=float, default=5.0)
    parser.add_argument(
        "--quality",
        default="auto",
        choices=["auto", "high"],
        help="auto: simulcast layers (the default); high: one 512x512 layer",
    )
    parser.add_argument("--codec", default="vp8", choices=["vp8", "h264", "vp9", "av1"])
    parser.add_argument("--avatar", default="default", help="avatar package the worker renders (photo or footage)")
    parser.add_argument("--out", default=str(IMG), help="folder for JSON and plots; '' for none")
    args = parser.parse_args()
    if args.avatar != "default":
        args.avatar = str(Path(args.avatar).resolve())
    summaries = []
    with LocalLiveKitServer() as info:
        server_pid = _server_pid(info)
        for n in [int(x) for x in args.sessions.split(",")]:
            print(f"N={n}: load average {psutil.getloadavg()}", flush=True)
            result = await run_sessions(
                info, server_pid, n, duration=args.duration, warmup=args.warmup, quality=args.quality,
                codec=args.codec, avatar=args.avatar,
            )
            summary = result.summary() | {"raw": asdict(result)}
            summaries.append(summary)
            print(json.dumps(result.summary(), indent=1), flush=True)
    print(table(summaries))
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "bench_concurrency.json").write_text(json.dumps(summaries, indent=1))
        for path in plot(summaries, out):
            print(f"wrote {path}")


def _server_pid(info: ServerInfo) -> int | None:
    port = int(info.url.rsplit(":", 1)[1])
    for conn in psutil.net_connections("tcp"):
        if conn.laddr and conn.laddr.port == port and conn.status == psutil.CONN_LISTEN:
            return conn.pid
    return None


if __name__ == "__main__":
    asyncio.run(main())
