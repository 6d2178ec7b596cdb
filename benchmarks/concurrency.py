"""How many avatars one machine renders at once: N rooms, each with a speaking agent.

Against a real ``livekit-server`` on loopback. For each N a fresh ``livekit-avatar worker``
process (the REAL default face: lip-sync model + renderer, 512x512 at 25 fps, real VP8
encoding) serves N rooms through dispatch mode. In each room an agent speaks without
pause (scripted LLM; speech synthesised once by the local TTS, then replayed), and a
viewer subscribes to the avatar and timestamps what it decodes.

Per N it reports:
* delivered fps at the viewers (min / median over sessions, over the measuring window);
* A/V offset: the lag that best aligns the received audio's loudness with the received
  mouth motion (positive: sound after picture), median over sessions. It is what an SDK
  viewer without A/V sync sees; the lip-sync model's own timing is part of it;
* CPU per session: the worker process's CPU time / wall time / N, in cores (psutil); the
  agents + viewers process and the server are reported apart;
* RSS per session: (worker RSS with N avatars - its RSS with the models loaded and no
  avatar) / N; the worker keeps one copy of the models for all its avatars;
* time to first frame: the agent joining its room and calling ``AvatarSession.start()``
  until the viewer decodes the first frame (dispatch, worker job start, join, publish,
  first keyframe); ``join_s`` is the part until ``start()`` returned.

Writes ``docs/img/bench_concurrency.json`` and the plots ``bench_fps.png`` and
``bench_cpu.png``.

    .venv/bin/python benchmarks/concurrency.py [--sessions 1,2,3,4,5] [--duration 30]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
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
from livekit.agents import AgentSession, tts  # noqa: E402
from livekit.agents.types import DEFAULT_API_CONNECT_OPTIONS, APIConnectOptions  # noqa: E402

from livekit_avatar_plugin import AvatarSession, VideoOptions  # noqa: E402
from livekit_avatar_plugin.audio.local_tts import synthesize  # noqa: E402
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
GRID = 32  # the viewer keeps a GRID x GRID luma thumbnail of each frame


class ReplayTTS(tts.TTS):
    """Speech synthesised once by the local TTS, replayed for every reply (no TTS CPU)."""

    def __init__(self, pcm: np.ndarray, sample_rate: int) -> None:
        super().__init__(
            capabilities=tts.TTSCapabilities(streaming=False),
            sample_rate=sample_rate,
            num_channels=1,
        )
        self.pcm = pcm

    def synthesize(
        self, text: str, *, conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS
    ) -> tts.ChunkedStream:
        return _Replay(tts=self, input_text=text, conn_options=conn_options)


class _Replay(tts.ChunkedStream):
    async def _run(self, output_emitter: tts.AudioEmitter) -> None:
        owner: ReplayTTS = self._tts  # type: ignore[assignment]
        output_emitter.initialize(
            request_id=uuid.uuid4().hex,
            sample_rate=owner.sample_rate,
            num_channels=1,
            mime_type="audio/pcm",
        )
        output_emitter.push(owner.pcm.tobytes())
        output_emitter.flush()


class Viewer(Subscriber):
    """Keeps loudness per audio frame and a luma thumbnail per video frame (small enough
    for a 30-minute soak)."""

    def __init__(self, info: ServerInfo, room_name: str, avatar_identity: str) -> None:
        super().__init__(info, room_name, avatar_identity)
        self.loudness: list[tuple[float, float]] = []  # (arrival, rms)
        self.thumbs: list[tuple[float, np.ndarray]] = []  # (arrival, GRIDxGRID luma)

    async def _read_audio(self, track: rtc.Track) -> None:
        async for ev in rtc.AudioStream(track, sample_rate=24000, num_channels=1):
            pcm = np.frombuffer(ev.frame.data, dtype=np.int16).astype(np.float32)
            self.loudness.append((time.monotonic(), float(np.sqrt(np.mean(pcm**2))) if pcm.size else 0.0))

    async def _read_video(self, track: rtc.Track) -> None:
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
        }


async def _speak_forever(session: AgentSession) -> None:
    while True:
        await session.say("speech").wait_for_playout()


async def _open_room(info: ServerInfo, agent_name: str, speech: ReplayTTS, quality: str) -> Room:
    name = f"bench-{uuid.uuid4().hex[:8]}"
    started = time.monotonic()
    agent_room, session, avatar = await agent_with_avatar(
        info,
        name,
        replies=("speech",),
        tts=speech,
        face_pipeline=None,
        mode="dispatch",
        agent_name=agent_name,
        video=VideoOptions(quality=quality, width=512, height=512, fps=25),
        dispatch_timeout_s=30.0,
        idle_timeout_s=None,
    )
    joined = time.monotonic() - started
    viewer = Viewer(info, name, avatar.avatar_identity)
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
) -> RunResult:
    """N concurrent rooms on one fresh worker process; measures over ``duration`` seconds."""
    load_average = psutil.getloadavg()
    pcm, rate = await asyncio.to_thread(synthesize, SPEECH)
    speech = ReplayTTS(pcm, rate)
    agent_name = f"bench-{uuid.uuid4().hex[:6]}"
    worker = WorkerProcess(info, agent_name=agent_name, capacity=n, face_pipeline=None)
    rooms: list[Room] = []
    try:
        await asyncio.to_thread(worker.wait_registered, 120.0)
        wproc = psutil.Process(worker.proc.pid)
        await asyncio.sleep(2.0)
        rss_idle = _rss_mb(wproc)
        rooms = list(await asyncio.gather(*(_open_room(info, agent_name, speech, quality) for _ in range(n))))
        await asyncio.sleep(warmup)
        me = psutil.Process()
        server = psutil.Process(server_pid) if server_pid else None
        psutil.cpu_percent()
        t0 = time.monotonic()
        cpu0 = (_cpu_s(wproc), _cpu_s(me), _cpu_s(server) if server else 0.0)
        timeline: list[dict[str, Any]] = []
        end = t0 + duration
        while time.monotonic() < end:
            step = min(sample_every or duration, end - time.monotonic())
            t_prev = time.monotonic()
            await asyncio.sleep(max(step, 0.0))
            if sample_every:
                now = time.monotonic()
                timeline.append(
                    {
                        "t_s": now - t0,
                        "worker_rss_mb": _rss_mb(wproc),
                        "fps": [frame_rate([t for t, _ in r.viewer.thumbs], t_prev, now) for r in rooms],
                    }
                )
                for r in rooms:  # keep the viewers' memory flat on long runs
                    r.viewer.thumbs = [x for x in r.viewer.thumbs if x[0] >= now - duration_keep(duration)]
                    r.viewer.loudness = [x for x in r.viewer.loudness if x[0] >= now - duration_keep(duration)]
        t1 = time.monotonic()
        cpu1 = (_cpu_s(wproc), _cpu_s(me), _cpu_s(server) if server else 0.0)
        machine = psutil.cpu_percent()
        rss = _rss_mb(wproc)
        wall = t1 - t0
        window = (max(t0, t1 - 30.0), t1)
        lags = [av_lag_ms(r.viewer, *window) for r in rooms]
        return RunResult(
            sessions=n,
            fps=[frame_rate([t for t, _ in r.viewer.thumbs], *window) for r in rooms],
            av_lag_ms=[lag for lag in lags if lag is not None],
            first_frame_s=[
                r.viewer.thumbs[0][0] - r.started_at if r.viewer.thumbs else float("nan")
                for r in rooms
            ],
            join_s=[r.joined_s for r in rooms],
            worker_cpu_cores=(cpu1[0] - cpu0[0]) / wall,
            driver_cpu_cores=(cpu1[1] - cpu0[1]) / wall,
            server_cpu_cores=(cpu1[2] - cpu0[2]) / wall,
            machine_cpu_percent=machine,
            worker_rss_idle_mb=rss_idle,
            worker_rss_mb=rss,
            load_average=load_average,
            timeline=timeline,
        )
    finally:
        await asyncio.gather(*(_close_room(r) for r in rooms))
        await asyncio.to_thread(worker.stop)


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
    ax.axhline(24, color="red", lw=0.8, ls=":", label="target 24 fps")
    ax.set(xlabel="concurrent avatar sessions", ylabel="fps delivered to the viewer",
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
    rows = ["| N | fps min / median | A/V lag (ms) | worker CPU / session | RSS / session | first frame | machine CPU |",
            "| --- | --- | --- | --- | --- | --- | --- |"]  # fmt: skip
    for r in results:
        rows.append(
            f"| {r['sessions']} | {r['fps_min']:.1f} / {r['fps_median']:.1f} "
            f"| {r['av_lag_ms_median']:+.0f} | {r['worker_cpu_per_session_cores'] * 100:.0f} % "
            f"| {r['rss_per_session_mb']:.0f} MB | {r['first_frame_s_median']:.2f} s "
            f"| {r['machine_cpu_percent']:.0f} % |"
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
    parser.add_argument("--out", default=str(IMG), help="folder for JSON and plots; '' for none")
    args = parser.parse_args()
    summaries = []
    with LocalLiveKitServer() as info:
        server_pid = _server_pid(info)
        for n in [int(x) for x in args.sessions.split(",")]:
            print(f"N={n}: load average {psutil.getloadavg()}", flush=True)
            result = await run_sessions(
                info, server_pid, n, duration=args.duration, warmup=args.warmup, quality=args.quality
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
