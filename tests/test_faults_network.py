"""Packet loss between the room's participants and the server.

The shared loopback is never touched (other tests run on it). Each test builds its own
link: a network namespace holding a LiveKit server of its own, joined to this namespace
by a veth pair, with random loss on that link applied by nftables inside the namespace
(this kernel has no netem; ``numgen random`` drops the same way). Loss is applied to
every packet crossing the link, in both directions, media and signalling alike, or, to
stand for one user's lossy network, to that viewer's media only.

Needs root (CAP_NET_ADMIN), ``ip`` (iproute2) and ``nft`` (nftables): see
scripts/apt/faults.txt.

The frame-rate target (>= 20 fps delivered at 5 % loss) is a speed figure and this
machine is shared, so the tests assert what must hold on any machine (video keeps
flowing and never freezes, every reply completes, nothing fails over) and print the rate;
``benchmarks/network_loss.py`` measures it properly (medians of several runs).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from livekit import rtc

from livekit_avatar_plugin._dispatch.protocol import ALIVE_ATTRIBUTE
from livekit_avatar_plugin.local_server import LocalLiveKitServer

from .av_harness import (
    Subscriber,
    audio_onsets,
    click_onsets,
    delivered_fps,
    longest_video_gap,
    worst_second_frames,
)
from .conftest import WorkerProcess
from .fakes import click_times
from .rooms import agent_room
from .test_faults_restart import server_tracks

pytestmark = pytest.mark.livekit_server


def _run(*args: str) -> None:
    proc = subprocess.run(args, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed: {proc.stderr.strip()}")


class LossyLink:
    """A namespace + veth pair whose packets are dropped at random, at a set rate."""

    def __init__(self) -> None:
        tag = f"{os.getpid() % 10000:04d}{random.randrange(16**3):03x}"
        self.netns = f"lkloss-{tag}"
        self.outer, self.inner = f"lkl{tag}a", f"lkl{tag}b"
        subnet = random.randrange(1, 250)
        self.outer_ip, self.inner_ip = f"10.231.{subnet}.1", f"10.231.{subnet}.2"

    def up(self) -> None:
        ns = ["ip", "netns", "exec", self.netns]
        _run("ip", "netns", "add", self.netns)
        _run("ip", "link", "add", self.outer, "type", "veth", "peer", "name", self.inner)
        _run("ip", "link", "set", self.inner, "netns", self.netns)
        _run("ip", "addr", "add", f"{self.outer_ip}/30", "dev", self.outer)
        _run("ip", "link", "set", self.outer, "up")
        _run(*ns, "ip", "addr", "add", f"{self.inner_ip}/30", "dev", self.inner)
        _run(*ns, "ip", "link", "set", self.inner, "up")
        _run(*ns, "ip", "link", "set", "lo", "up")
        _run(*ns, "nft", "add", "table", "inet", "lossy")
        for chain, hook in (("rx", "input"), ("tx", "output")):
            _run(*ns, "nft", "add", "chain", "inet", "lossy", chain,
                 f"{{ type filter hook {hook} priority 0; policy accept; }}")

    def set_loss(self, percent: float, *, client_udp_ports: set[int] | None = None) -> None:
        """Drop ``percent`` % of the packets crossing the link, each way: all of them, or
        only the media of the participants whose UDP ports are given (their own network
        is lossy; everyone else's is clean)."""
        ns = ["ip", "netns", "exec", self.netns]
        per_mille = round(percent * 10)
        ports = "{ " + ", ".join(str(p) for p in sorted(client_udp_ports or ())) + " }"
        for chain, match, port_field in (("rx", "iifname", "sport"), ("tx", "oifname", "dport")):
            _run(*ns, "nft", "flush", "chain", "inet", "lossy", chain)
            if not per_mille:
                continue
            only = ["udp", port_field, ports] if client_udp_ports else []
            _run(*ns, "nft", "add", "rule", "inet", "lossy", chain, match, self.inner, *only,
                 "numgen", "random", "mod", "1000", "<", str(per_mille), "counter", "drop")

    def dropped_packets(self) -> int:
        out = subprocess.run(
            ["ip", "netns", "exec", self.netns, "nft", "list", "table", "inet", "lossy"],
            capture_output=True, text=True, check=False,
        ).stdout
        words = out.split()
        return sum(int(words[i + 1]) for i, w in enumerate(words) if w == "packets")

    def down(self) -> None:
        with contextlib.suppress(RuntimeError):
            _run("ip", "link", "del", self.outer)  # takes its peer with it
        with contextlib.suppress(RuntimeError):
            _run("ip", "netns", "del", self.netns)


@contextlib.contextmanager
def server_behind_lossy_link(log_path: Path | None = None) -> Iterator[tuple[LossyLink, LocalLiveKitServer]]:
    """A LiveKit server in a namespace of its own, reached through a ``LossyLink`` (no loss
    until ``set_loss``); both taken down after. Needs root."""
    link = LossyLink()
    server = LocalLiveKitServer(
        host=link.inner_ip, launcher=["ip", "netns", "exec", link.netns], log_path=log_path
    )
    try:
        link.up()
        server.start()
        yield link, server
    finally:
        server.stop(kill=True)
        link.down()


@pytest.fixture
def lossy_server() -> Iterator[tuple[LossyLink, LocalLiveKitServer]]:
    if os.geteuid() != 0:
        pytest.fail("the packet-loss tests need root (CAP_NET_ADMIN) for a network namespace")
    log = Path(tempfile.mkstemp(prefix="livekit-lossy-server-", suffix=".log")[1])
    with server_behind_lossy_link(log) as pair:
        yield pair


async def _speak_and_measure(
    r, viewer: Subscriber, seconds: float, *, skip_s: float = 0.3, at_least_s: float = 0.0
) -> tuple[float, int, float, int]:
    """Say ``clicks <seconds>``; delivered fps at the viewer (from ``skip_s`` into the
    reply to its end, and for ``at_least_s`` at least), the clicks it heard, and, over
    the same window, the longest it went without a frame and the fewest frames it got in
    any one second."""
    t0 = time.monotonic()
    await asyncio.wait_for(r.session.say(f"clicks {seconds:g}").wait_for_playout(), seconds + 20)
    playout_s = time.monotonic() - t0
    if playout_s < at_least_s:
        print(f"\nplayout reported after {playout_s:.2f} s of a {seconds:g} s reply")
        await asyncio.sleep(at_least_s - playout_s)
    t1 = time.monotonic()
    await asyncio.sleep(0.5)
    fps = delivered_fps(viewer.capture, after=t0 + skip_s, before=t1)
    gap = longest_video_gap(viewer.capture, after=t0 + skip_s, before=t1)
    worst = worst_second_frames(viewer.capture, after=t0 + skip_s, before=t1)
    heard = len(audio_onsets(viewer.capture, after=t0, before=t1 + 0.5))
    return fps, heard, gap, worst


# Below this the face would look frozen rather than merely choppy.
VIDEO_FLOWING_FPS = 10.0
# A wait this long between frames is a freeze. With loss on every link, the avatar's own
# included, a viewer the server moves to VP8's lowest simulcast layer freezes (see
# test_vp9_layers_keep_flowing_under_loss_on_the_avatars_own_link): for 3 s in 4 of 26
# runs of this scenario with two busy cores alongside; in a full-suite run once, 1.1 s.
FREEZE_S = 2.0


async def _reply_under_loss(
    link: LossyLink,
    server: LocalLiveKitServer,
    prefix: str,
    caplog: pytest.LogCaptureFixture,
    *,
    viewer_link_only: bool = False,
    low_layer: bool = False,
    seconds: float = 12.0,
    uplink_warning: bool = False,
    **avatar_options,
) -> None:
    """A reply spoken with 5 % loss each way, on every link or on the viewer's media only,
    to a viewer that asks for the top or the lowest simulcast layer: the video and the
    speech must keep flowing, with no freeze and nothing failing over; the avatar warns
    of its own lossy link if, and only if, ``uplink_warning``."""
    caplog.set_level(logging.WARNING, logger="livekit_avatar_plugin")
    async with agent_room(server.info, prefix, **avatar_options) as r:
        await r.watcher.wait_video(r.avatar.avatar_identity)
        viewer = Subscriber(server.info, r.room_name, r.avatar.avatar_identity)
        await viewer.connect()
        try:
            await asyncio.wait_for(viewer.video_track.wait(), 15)
            if low_layer:
                viewer.ask_for_lowest_layer()
                await asyncio.sleep(2.0)  # the switch itself waits on a key frame
            ports = await viewer.udp_ports() if viewer_link_only else None
            assert ports is None or ports, "the viewer has no selected ICE pair"
            link.set_loss(5.0, client_udp_ports=ports)
            # The whole reply, from the moment the loss starts: that is when a viewer on a
            # simulcast layer is most likely to be switched to another.
            fps, heard, gap, worst = await _speak_and_measure(r, viewer, seconds)
            where = "on the viewer's media" if viewer_link_only else "on every link"
            dropped = link.dropped_packets()
            print(
                f"\n5% loss each way {where} ({dropped} packets dropped), "
                f"{'lowest' if low_layer else 'top'} layer: delivered {fps:.1f} fps at the "
                f"viewer, {worst} frames in its worst second, longest without a frame "
                f"{gap * 1000:.0f} ms, {heard}/{len(click_times(seconds))} clicks heard"
            )
            assert dropped > 0
            assert fps >= VIDEO_FLOWING_FPS
            assert gap < FREEZE_S, f"the video froze for {gap:.1f} s"
            # Audio is not retransmitted: with 5 % loss on each of two hops, RED's spare
            # copy is sometimes lost with its packet, and a click with it (0-3 of 38 in
            # runs so far). The speech must keep flowing, not arrive whole.
            assert heard >= int(0.9 * len(click_times(seconds)))
            assert r.failed == []
            warned = [m for m in caplog.messages if "link to the LiveKit server is losing" in m]
            assert bool(warned) == uplink_warning, warned
        finally:
            await viewer.aclose()


async def test_at_5_percent_loss_video_and_speech_keep_flowing(lossy_server, caplog):
    # With the loss on the avatar's own link, VP8 layers are at risk (see the VP9 test
    # below), and the avatar says so in its log.
    await _reply_under_loss(*lossy_server, "loss5", caplog, uplink_warning=True)


@pytest.mark.parametrize("low_layer", [False, True], ids=["top_layer", "lowest_layer"])
async def test_a_viewers_own_lossy_network_leaves_every_layer_flowing(
    lossy_server, caplog, low_layer
):
    """The usual place for loss: the user's network, with the avatar's worker on a clean
    link to the server. The server retransmits what the viewer misses, on any layer."""
    await _reply_under_loss(
        *lossy_server, "loss5v", caplog, viewer_link_only=True, low_layer=low_layer, seconds=8.0
    )


async def test_vp9_layers_keep_flowing_under_loss_on_the_avatars_own_link(lossy_server, caplog):
    """The workaround for a lossy link between the avatar and the server.

    WebRTC fills what a simulcast encoder leaves of its budget with padding, sent on the
    lowest layer's own stream (~1 Mbps of it with this picture). When padding is lost on
    the way to the server, the server cannot tell it from lost video, and a VP8 (or
    H.264) viewer of that layer gets holes nobody can fill: it decodes only key frames,
    one per 3 s. VP9's layers carry frame numbers of their own (the dependency
    descriptor), so a viewer of the lowest one is not misled."""
    await _reply_under_loss(
        *lossy_server, "loss5vp9", caplog, low_layer=True, video_codec="vp9"
    )


async def test_the_session_survives_20_percent_loss_for_30_s(lossy_server):
    """Speech over a link this bad is slow (its transport is a reliable channel that
    backs off), but nothing dies: no failover, no close, the reply in flight completes,
    and once the loss ends the session works as before."""
    link, server = lossy_server
    async with agent_room(server.info, "loss20") as r:
        avatar = r.avatar
        closed: list = []
        avatar.on("avatar_closed", closed.append)
        await r.watcher.wait_video(avatar.avatar_identity)
        viewer = Subscriber(server.info, r.room_name, avatar.avatar_identity)
        await viewer.connect()
        try:
            await asyncio.wait_for(viewer.video_track.wait(), 15)
            link.set_loss(20.0)
            t0 = time.monotonic()
            handle = r.session.say("clicks 20")
            await asyncio.sleep(30.0)
            fps_lossy = delivered_fps(viewer.capture, after=t0 + 2.0, before=time.monotonic())
            dropped = link.dropped_packets()
            link.set_loss(0.0)
            await asyncio.wait_for(handle.wait_for_playout(), 60)
            done_after = time.monotonic() - t0
            await asyncio.sleep(2.0)
            # Still the same session, face and all, and fully working once the loss ends.
            assert r.failed == [] and closed == []
            assert avatar._transport._avatar_room.connection_state == rtc.ConnectionState.CONN_CONNECTED
            tracks = await server_tracks(server.info, r.room_name)
            assert tracks[avatar.avatar_identity] == ["avatar_audio", "avatar_video"]
            # After a stall this long, LiveKit's avatar-side receiver may have retried a
            # playback_finished RPC whose first try did arrive, late: the agent then counts
            # that stale duplicate for the next reply, whose playout is reported early
            # (its audio still plays in full). So the media are measured over the whole
            # reply, not just until the reported playout.
            fps, heard, _, _ = await _speak_and_measure(r, viewer, 3.0, at_least_s=3.5)
            print(
                f"\n20% loss each way for 30 s ({dropped} packets dropped): {fps_lossy:.1f} fps "
                f"delivered meanwhile; the 20 s reply started under loss finished after "
                f"{done_after:.0f} s; after the loss: {fps:.1f} fps, "
                f"{heard}/{len(click_times(3.0))} clicks heard"
            )
            assert fps_lossy > 0.0  # frames kept coming, however slowly
            if heard != len(click_times(3.0)):
                # Late or lost? The reliable channel that carries speech may still be backed
                # off when the loss ends, and LiveKit's receiver can report a stale
                # playback_finished for this reply: late is tolerated (and printed), lost
                # is not.
                t_end = time.monotonic()
                await asyncio.sleep(12.0)
                later = audio_onsets(viewer.capture, after=t_end - 5.0, before=time.monotonic())
                print(
                    f"{heard}/{len(click_times(3.0))} clicks heard during the reply after the "
                    f"loss; onsets in the 17 s around and after it (s from its end): "
                    f"{[round(x - t_end, 2) for x in later]}"
                )
                assert heard + len([x for x in later if x > t_end]) >= len(click_times(3.0)), (
                    "the reply after the loss was not heard in full, even late"
                )
            assert fps >= VIDEO_FLOWING_FPS
        finally:
            await viewer.aclose()


# -- heavy loss: the agent's voice takes a lagging reply over --------------------------------

HEAVY_REPLY_S = 6.0


def reply_figures(onsets: list[float], said_at: float) -> dict[str, float]:
    """Figures of one reply from the arrival times of its clicks (both voices merged):
    ``first_audio_s`` (say() to the first click heard), ``stall_s`` (the longest the clicks
    fell further behind their schedule between one click and the next), clicks heard and
    ``repeated`` (heard twice)."""
    schedule = click_times(HEAVY_REPLY_S)
    out: dict[str, float] = {"clicks": float(len(onsets)), "expected": float(len(schedule))}
    if not onsets:
        return out
    out["first_audio_s"] = onsets[0] - said_at
    # Each heard click matched to its place in the schedule by arrival order; a click heard
    # twice shows as more onsets than the schedule has.
    out["repeated"] = float(max(0, len(onsets) - len(schedule)))
    n = min(len(onsets), len(schedule))
    late = np.asarray(onsets[:n]) - (onsets[0] + schedule[:n] - schedule[0])
    out["stall_s"] = float(np.max(np.diff(late))) if n > 1 else 0.0
    out["drift_s"] = float(late[-1]) if n else 0.0
    return out


async def replies_under_loss(
    link: LossyLink, server: LocalLiveKitServer, loss: float, replies: int, *, mode: str = "participant"
) -> list[dict[str, float]]:
    """A fresh agent + avatar (``participant``, or ``dispatch`` to an avatar worker of its
    own, started here) + user; ``loss`` % on every link, then ``replies`` replies of
    clicks one after another, heard by the user in both voices (the avatar's, and the
    agent's own should it take a reply over). ``reply_figures`` of each, with
    ``handed_over``: replies the agent's voice took over so far."""
    worker = None
    options: dict = {}
    if mode == "dispatch":
        worker = WorkerProcess(server.info, agent_name=f"lossy-{uuid.uuid4().hex[:6]}")
        await asyncio.to_thread(worker.wait_registered)
        options = {"mode": "dispatch", "agent_name": worker.agent_name, "dispatch_timeout_s": 20.0}
    try:
        return await _replies(link, server, loss, replies, options)
    finally:
        if worker is not None:
            await asyncio.to_thread(worker.stop)


async def _replies(
    link: LossyLink, server: LocalLiveKitServer, loss: float, replies: int, options: dict
) -> list[dict[str, float]]:
    results: list[dict[str, float]] = []
    async with agent_room(server.info, "heavy-loss", **options) as r:
        await r.watcher.wait_video(r.avatar.avatar_identity)
        voices = (r.avatar.avatar_identity, r.agent_room.local_participant.identity)
        handovers: list[str] = []
        record = _Records(handovers, "fell behind the agent's speech")
        logging.getLogger("livekit_avatar_plugin").addHandler(record)
        try:
            await asyncio.sleep(2.0)
            link.set_loss(loss)
            for _ in range(replies):
                said_at = time.monotonic()
                handle = r.session.say(f"clicks {HEAVY_REPLY_S:g}")
                await asyncio.wait_for(handle.wait_for_playout(), 120)
                await asyncio.sleep(2.0)  # the end of the reply reaches the user (up to 2 s late)
                heard = sorted(
                    t for who in voices for t in click_onsets(r.watcher.audio.get(who, []), after=said_at)
                )
                results.append(reply_figures(heard, said_at))
                results[-1]["dropped"] = float(link.dropped_packets())
                results[-1]["handed_over"] = float(len(handovers))
            link.set_loss(0.0)
            assert r.failed == []
            if options.get("mode") == "dispatch":  # its word through the server reached the agent
                avatar = r.agent_room.remote_participants[r.avatar.avatar_identity]
                assert ALIVE_ATTRIBUTE in avatar.attributes
        finally:
            logging.getLogger("livekit_avatar_plugin").removeHandler(record)
    return results


class _Records(logging.Handler):
    """Keeps the messages that contain ``needle``."""

    def __init__(self, into: list[str], needle: str) -> None:
        super().__init__(logging.WARNING)
        self._into, self._needle = into, needle

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if self._needle in message:
            self._into.append(message)


@pytest.mark.parametrize("mode", ["participant", "dispatch"])
async def test_heavy_loss_replies_start_in_time_never_stall_and_are_never_heard_twice(lossy_server, mode):
    """20 % loss each way on every link. The agent-to-avatar channel is reliable, so its
    retransmissions back off; when the avatar runs dry with speech still on its way, the
    agent's own voice says the rest of that reply, from where it was heard. A dispatched
    avatar's worker is on the lossy side too: its beats and the agent's request to give
    a reply up cross the lossy link."""
    link, server = lossy_server
    figures = await replies_under_loss(link, server, 20.0, 3, mode=mode)
    for i, f in enumerate(figures):
        print(f"\nreply {i + 1} under 20 % loss: " + ", ".join(f"{k} {v:.2f}" for k, v in f.items()))
    for f in figures:
        assert f["clicks"] >= 0.7 * f["expected"], f  # RTP to the user loses some, not most
        assert f["repeated"] == 0, f
        # The targets (first audio 1.5 s, no stall over 1 s) are timings on a shared machine:
        # benchmarks/heavy_loss.py measures them. Here, bounds that waiting the
        # retransmissions out (stalls up to 6.8 s) would break.
        assert f["first_audio_s"] <= 2.0, f
        assert f["stall_s"] <= 2.0, f
