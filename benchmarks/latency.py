"""Latency: what the face adds to the agent's response time, an A/B in one run.

The same scripted agent (the fake LLM and signal TTS of the A/V tests) speaks a reply to a
subscriber, in turn without an avatar (the agent publishes its own audio, as LiveKit's
RoomIO does) and with one in each mode, ``--runs`` times each, the order rotated every
run. The subscriber timestamps the first audio of each reply and, with a face, the first
lip-synced frame (the test-pattern face flashes when its mouth opens). Then it interrupts
a tone and times the silence.

For each mode, medians over the runs:

* ``added_ms``: (first audio heard with the avatar) - (first audio heard without it), each
  from its own first TTS byte, paired run by run;
* ``first_frame_ms``: first TTS byte -> first lip-synced frame at the subscriber;
* ``interrupt_ms``: interruption -> the avatar's audio silent at the subscriber;

and where the milliseconds go, from stamps along the way: the agent's pipeline (TTS byte
to the avatar's audio sink), the hop to the avatar (data stream or in-process queue), the
avatar's own buffering (lip-sync chunking, lookahead, the pacer) up to the first speech
frame published, and the network and the subscriber's jitter buffer. The waterfall goes to
``docs/img/latency_waterfall.png``.

    .venv/bin/python benchmarks/latency.py [--runs 5] [--modes participant,in_process]

Last line: ``latency added_ms=X first_frame_ms=Y interrupt_ms=Z`` for ``participant``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from livekit import rtc  # noqa: E402
from livekit.agents import Agent, AgentSession  # noqa: E402
from livekit.agents.voice import room_io  # noqa: E402

from livekit_avatar_plugin import AvatarSession, VideoOptions  # noqa: E402
from livekit_avatar_plugin.local_server import LocalLiveKitServer, ServerInfo  # noqa: E402
from tests.av_harness import (  # noqa: E402
    SPEECH_THRESHOLD,
    SenderLog,
    Subscriber,
    audio_onsets,
    first_video_after,
    make_token,
    silence_after,
)
from tests.fakes import ScriptedLLM, SignalTTS, click_times  # noqa: E402
from tests.pattern_pipeline import TestPatternPipeline  # noqa: E402

NO_AVATAR = "no avatar"
STAGES = ("agent pipeline", "to the avatar", "lip-sync (chunks, lookahead, model)", "render + pacer",
          "WebRTC audio stamp", "network + jitter buffer")  # fmt: skip
# What the viewer sees against what it hears (ms; negative: shown before it is heard).
ALIGNMENT = ("transcript_start_ms", "transcript_end_ms", "state_speaking_ms", "state_listening_ms")
REPLY = "clicks 1.5"


def _first(stamps: list[float]) -> float | None:
    return stamps[0] if stamps else None


async def one_run(info: ServerInfo, mode: str, size: int) -> dict[str, float | None]:
    """One reply (and one interrupted tone) with ``mode``'s avatar, or none."""
    room_name = f"lat-{uuid.uuid4().hex[:8]}"
    agent_room = rtc.Room()
    await agent_room.connect(info.url, make_token(info, room_name, f"agent-{uuid.uuid4().hex[:6]}", agent=True,
                                                    can_update_own_metadata=True))
    tts = SignalTTS()
    session = AgentSession(llm=ScriptedLLM(["clicks 1.5"]), tts=tts,
                           turn_handling={"interruption": {"resume_false_interruption": False}})
    avatar: AvatarSession | None = None
    sender = SenderLog()
    stamps: dict[str, list[float]] = {"sink": [], "received": [], "frame": [], "queued": []}
    viewer: Subscriber | None = None
    out: dict[str, float | None] = {}
    shown: dict[str, list[float]] = {"text": [], "text_end": [], "speaking": [], "listening": []}
    readers: list[asyncio.Task[None]] = []
    try:
        identity = agent_room.local_participant.identity
        agent_identity = identity
        if mode != NO_AVATAR:
            avatar = AvatarSession(
                face_pipeline=TestPatternPipeline(), livekit_url=info.url, api_key=info.api_key,
                api_secret=info.api_secret, mode=mode, first_message={"enabled": False},
                video=VideoOptions(width=size, height=size),
            )  # fmt: skip
            avatar._publish_taps.append(sender.tap)
            await avatar.start(session, room=agent_room)
            identity = avatar.avatar_identity
        viewer = Subscriber(info, room_name, identity)
        _watch_agent(viewer.room, agent_identity, shown, readers)
        await viewer.connect()
        await session.start(Agent(instructions="test"), room=agent_room,
                            room_options=room_io.RoomOptions(audio_input=False, text_input=False,
                                                             close_on_disconnect=False))
        if avatar is not None:
            await asyncio.wait_for(viewer.video_track.wait(), 15)
            publisher = avatar._transport.publisher
            # The agent's audio sink: the failover's (remote modes) or the in-process queue.
            _stamp(avatar._failover or publisher._receiver, "capture_frame", stamps["sink"])
            _stamp(publisher._generator, "push_audio", stamps["received"])
            _stamp(publisher._generator, "_speech_frame", stamps["frame"])
            _stamp(publisher._pacer, "push_audio", stamps["queued"], when=lambda kw: kw.get("speech", False))
        else:
            await session.say("clicks 0.2").wait_for_playout()  # RoomIO publishes on first speech
        await asyncio.wait_for(viewer.audio_track.wait(), 15)
        # The agent sends its transcript once RoomIO has linked a user; the server announces
        # a viewer to the agent only when its connection is up (~1-3 s after it joins).
        while viewer.room.local_participant.identity not in agent_room.remote_participants:
            await asyncio.sleep(0.05)
        await asyncio.sleep(1.0)
        for stamp in [*stamps.values(), *shown.values()]:
            stamp.clear()

        t_say = time.monotonic()
        await session.say(REPLY).wait_for_playout()
        t_end = time.monotonic()
        await asyncio.sleep(1.0)
        first_byte = tts.history.records[-1].first_byte_at
        heard = _first(audio_onsets(viewer.capture, after=t_say, before=t_end + 0.5))
        out["heard_ms"] = None if heard is None else (heard - first_byte) * 1000
        if heard is not None:
            # The reply's audio as heard: from its first click back to its start, then its length.
            start = heard - float(click_times(float(REPLY.split()[1]))[0])
            end = start + float(REPLY.split()[1])
            for key, times, ref in (("transcript_start_ms", shown["text"], start),
                                    ("transcript_end_ms", shown["text_end"], end),
                                    ("state_speaking_ms", shown["speaking"], start),
                                    ("state_listening_ms", shown["listening"], end)):  # fmt: skip
                seen = next((t for t in times if t >= t_say), None)
                out[key] = None if seen is None else (seen - ref) * 1000
        if avatar is not None:
            frame = first_video_after(viewer.capture, first_byte, True, SPEECH_THRESHOLD)
            out["first_frame_ms"] = None if frame is None else (frame - first_byte) * 1000
            published = next((t for t, peak in sender.audio if t >= t_say and peak > 0.25 * 32768), None)
            sink, received = _first(stamps["sink"]), _first(stamps["received"])
            ready, queued = _first(stamps["frame"]), _first(stamps["queued"])
            if None not in (sink, received, ready, queued, published, heard):
                out["agent pipeline"] = (sink - first_byte) * 1000
                out["to the avatar"] = (received - sink) * 1000
                out["lip-sync (chunks, lookahead, model)"] = (ready - received) * 1000
                out["render + pacer"] = (queued - ready) * 1000
                out["WebRTC audio stamp"] = (published - queued) * 1000
                out["network + jitter buffer"] = (heard - published) * 1000

            handle = session.say("tone 6")
            await asyncio.sleep(1.5)
            t_interrupt = time.monotonic()
            handle.interrupt()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(handle.wait_for_playout(), 5)
            await asyncio.sleep(1.0)
            silent = silence_after(viewer.capture, t_interrupt)
            out["interrupt_ms"] = None if silent is None else silent * 1000
    finally:
        for task in readers:
            task.cancel()
        with contextlib.suppress(Exception):
            await session.aclose()
        if avatar is not None:
            with contextlib.suppress(Exception):
                await avatar.aclose()
        if viewer is not None:
            await viewer.aclose()
        await agent_room.disconnect()
    return out


def _watch_agent(room: rtc.Room, agent: str, shown: dict[str, list[float]], readers: list[asyncio.Task[None]]) -> None:
    """Timestamp what a viewer shows of the agent: its transcript as it streams in (each
    chunk, and the stream's end) and its state (``lk.agent.state``) as it changes."""

    def on_text(reader: rtc.TextStreamReader, who: str) -> None:
        if who != agent:
            return

        async def read() -> None:
            async for _ in reader:
                shown["text"].append(time.monotonic())
            shown["text_end"].append(time.monotonic())

        readers.append(asyncio.create_task(read()))

    def on_attributes(changed: dict[str, str], participant: rtc.Participant) -> None:
        state = changed.get("lk.agent.state")
        if participant.identity == agent and state in ("speaking", "listening"):
            shown[state].append(time.monotonic())

    room.register_text_stream_handler("lk.transcription", on_text)
    room.on("participant_attributes_changed", on_attributes)


def _stamp(obj: Any, method: str, into: list[float], when: Any = None) -> None:
    """Record when ``obj.method`` is called (instrumentation: the instance's attribute),
    where ``when(kwargs)`` holds if given."""
    original = getattr(obj, method)

    async def stamped(*args: Any, **kwargs: Any) -> Any:
        if when is None or when(kwargs):
            into.append(time.monotonic())
        return await original(*args, **kwargs)

    setattr(obj, method, stamped)


def _median(values: list[float | None]) -> float:
    kept = [v for v in values if v is not None]
    return statistics.median(kept) if kept else float("nan")


def plot(rows: dict[str, dict[str, float]], baseline_ms: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = ["#4c72b0", "#dd8452", "#55a868", "#c44e52", "#937860", "#8172b3"]
    fig, ax = plt.subplots(figsize=(9, 2.0 + 0.6 * (len(rows) + 1)))
    labels = []
    for i, (mode, stages) in enumerate(rows.items()):
        left = 0.0
        for stage, colour in zip(STAGES, colours):
            width = stages.get(stage, float("nan"))
            if np.isnan(width):
                continue
            ax.barh(i, width, left=left, color=colour, label=stage if i == 0 else None)
            if width >= 8:
                ax.text(left + width / 2, i, f"{width:.0f}", ha="center", va="center", color="white", fontsize=8)
            left += width
        labels.append(f"{mode}\n(first audio heard)")
    ax.barh(len(rows), baseline_ms, color="#999999", label="no avatar: TTS byte to first audio heard")
    ax.text(baseline_ms / 2, len(rows), f"{baseline_ms:.0f}", ha="center", va="center", color="white", fontsize=8)
    labels.append(NO_AVATAR)
    ax.set_yticks(range(len(labels)), labels)
    ax.invert_yaxis()
    ax.set_xlabel("ms from the first TTS byte (medians)")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.28), ncol=3, fontsize=8, frameon=False)
    ax.set_title("Where the first audio's milliseconds go")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(f"waterfall written to {path.relative_to(ROOT)}")


async def main(args: argparse.Namespace) -> None:
    modes = [NO_AVATAR, *args.modes.split(",")]
    server = LocalLiveKitServer()
    server.start()
    results: dict[str, list[dict[str, float | None]]] = {m: [] for m in modes}
    try:
        for run in range(args.runs):
            order = modes[run % len(modes):] + modes[: run % len(modes)]  # rotate: no order bias
            for mode in order:
                r = await one_run(server.info, mode, args.size)
                results[mode].append(r)
                shown = ", ".join(f"{k} {v:.0f}" for k, v in r.items() if v is not None)
                print(f"run {run + 1} {mode}: {shown}", flush=True)
    finally:
        server.stop()
    base = results[NO_AVATAR]
    print(f"\nload average {os.getloadavg()[0]:.1f}; {args.runs} runs; ms, medians")
    print("| mode | added_ms | first_frame_ms | interrupt_ms | " + " | ".join(STAGES) + " |")
    print("|---|---|---|---|" + "---|" * len(STAGES))
    summary: dict[str, dict[str, float]] = {}
    for mode in modes[1:]:
        runs = results[mode]
        added = [
            (r["heard_ms"] - b["heard_ms"]) if r.get("heard_ms") is not None and b.get("heard_ms") is not None else None
            for r, b in zip(runs, base)
        ]
        summary[mode] = {k: _median([r.get(k) for r in runs]) for k in ("first_frame_ms", "interrupt_ms", *STAGES)}
        summary[mode]["added_ms"] = _median(added)
        s = summary[mode]
        print(f"| {mode} | {s['added_ms']:.0f} | {s['first_frame_ms']:.0f} | {s['interrupt_ms']:.0f} | "
              + " | ".join(f"{s[k]:.0f}" for k in STAGES) + " |")
    baseline = _median([b.get("heard_ms") for b in base])
    print(f"| {NO_AVATAR} (TTS byte -> first audio heard) | {baseline:.0f} |")
    print("\nWhat the viewer shows against what it hears (ms, medians; negative: shown before heard)")
    print("| mode | " + " | ".join(ALIGNMENT) + " |")
    print("|---|" + "---|" * len(ALIGNMENT))
    for mode in modes:
        print(f"| {mode} | " + " | ".join(f"{_median([r.get(k) for r in results[mode]]):+.0f}" for k in ALIGNMENT) + " |")
    if not args.no_plot:
        plot({m: summary[m] for m in modes[1:]}, baseline, ROOT / "docs" / "img" / "latency_waterfall.png")
    p = summary.get("participant")
    if p:
        print(f"latency added_ms={p['added_ms']:.0f} first_frame_ms={p['first_frame_ms']:.0f} "
              f"interrupt_ms={p['interrupt_ms']:.0f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--modes", default="participant,in_process")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--no-plot", action="store_true")
    asyncio.run(main(parser.parse_args()))
