"""Dispatch mode: the avatar is a job of a separate ``livekit-avatar worker`` process.

Real server, real worker process (test-pattern face through ``--face-pipeline``), real
agent session. What a viewer receives is measured with the A/V harness.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid

import pytest
from livekit import api, rtc

from livekit_avatar_plugin._dispatch.protocol import AvatarJobRequest
from livekit_avatar_plugin._dispatch.worker import (
    AvatarWorker,
    AvatarWorkerOptions,
    resolve_face_pipeline,
)

from .av_harness import (
    Subscriber,
    audio_onsets,
    delivered_fps,
    flash_onsets,
    make_token,
    pair_offsets,
)
from .fakes import click_times
from .rooms import (
    AudioWatcher,
    Watcher,
    agent_room,
    agent_with_avatar,
    assert_agent_receives_none_of_its_avatar,
    shut_down,
    wait_until,
)
from .test_session import _left_room_at

pytestmark = pytest.mark.livekit_server


# -- no server needed ------------------------------------------------------------------------


def test_job_request_round_trips_through_metadata():
    request = AvatarJobRequest(agent_identity="agent-1", avatar_identity="avatar-1")
    assert AvatarJobRequest.model_validate_json(request.model_dump_json()) == request
    with pytest.raises(ValueError, match="avatar_identity"):
        AvatarJobRequest.model_validate_json('{"agent_identity": "a"}')


def test_face_pipeline_plug_in_point_names_the_problem():
    pipeline = resolve_face_pipeline("tests.pattern_pipeline:TestPatternPipeline")
    assert pipeline is resolve_face_pipeline("tests.pattern_pipeline:TestPatternPipeline")
    assert pipeline.create_renderer(64, 64).render({}, None, 0.0).shape == (64, 64, 3)
    with pytest.raises(ValueError, match="cannot be imported"):
        resolve_face_pipeline("tests.pattern_pipeline:NoSuchThing")
    with pytest.raises(ValueError, match="create_motion"):
        resolve_face_pipeline("tests.fakes:SAMPLE_RATE")
    with pytest.raises(ValueError, match="could not be created"):
        resolve_face_pipeline("tests.fakes:click_times")
    with pytest.raises(ValueError, match="face_pipeline"):
        AvatarWorkerOptions(face_pipeline="not a spec")


class _HeldJobRequest:
    """A job request whose accept() waits, as a real one waits for the server's
    assignment, until the test lets it go; then the assignment never comes."""

    def __init__(self, number: int, release: asyncio.Event, metadata: str) -> None:
        self.id = f"job-{number}"
        self.job = type("Job", (), {"metadata": metadata})()
        self.answer: str | None = None
        self._release = release

    async def accept(self, **_: object) -> None:
        self.answer = "accepted"
        await self._release.wait()
        raise TimeoutError("assignment timed out")

    async def reject(self, *, terminate: bool = False) -> None:
        self.answer = "terminated" if terminate else "declined"


async def test_a_burst_of_requests_never_takes_a_worker_past_its_capacity():
    worker = AvatarWorker(
        AvatarWorkerOptions(capacity=4, url="ws://127.0.0.1:1", api_key="key", api_secret="secret")
    )
    release = asyncio.Event()
    metadata = AvatarJobRequest(agent_identity="agent", avatar_identity="avatar").model_dump_json()
    requests = [_HeldJobRequest(n, release, metadata) for n in range(6)]
    pending = [asyncio.create_task(worker._on_request(req)) for req in requests]
    await wait_until(lambda: all(req.answer for req in requests), 5, "every request answered")
    answers = [req.answer for req in requests]
    # Declined, not terminated: the server offers those two to another worker.
    assert answers.count("accepted") == 4 and answers.count("declined") == 2, answers
    release.set()
    await asyncio.gather(*pending, return_exceptions=True)
    # Accepted jobs that were never assigned give their slots back.
    late = [_HeldJobRequest(n, release, metadata) for n in range(6, 10)]
    await asyncio.gather(*(worker._on_request(req) for req in late), return_exceptions=True)
    assert [req.answer for req in late] == ["accepted"] * 4


def test_worker_command_requires_credentials(monkeypatch, capsys):
    from livekit_avatar_plugin.cli import main

    for var in ("LIVEKIT_URL", "LIVEKIT_API_KEY", "LIVEKIT_API_SECRET"):
        monkeypatch.delenv(var, raising=False)
    assert main(["worker"]) == 2
    assert "LIVEKIT_URL (--url)" in capsys.readouterr().out


# -- with a worker --------------------------------------------------------------------------


async def test_dispatched_avatar_speaks_in_sync_and_reports_playback(livekit_server, avatar_worker):
    info = livekit_server
    room_name = f"dispatch-{uuid.uuid4().hex[:8]}"
    agent_room_, session, avatar = await agent_with_avatar(
        info, room_name, replies=("clicks 3",), mode="dispatch", agent_name=avatar_worker.agent_name
    )
    viewer = Subscriber(info, room_name, avatar.avatar_identity)
    events: list[tuple[bool, float]] = []
    try:
        # start() returned: the worker joined as the identity the agent chose, on its behalf.
        assert avatar.avatar_identity in avatar_worker.rendered()
        assert avatar._transport.publisher is None  # nothing renders in the agent's process
        await viewer.connect()
        avatar_p = viewer.room.remote_participants[avatar.avatar_identity]
        assert avatar_p.attributes["lk.publish_on_behalf"] == agent_room_.local_participant.identity
        session.output.audio.on(
            "playback_finished", lambda ev: events.append((ev.interrupted, ev.playback_position))
        )
        await asyncio.wait_for(viewer.video_track.wait(), 15)
        await asyncio.wait_for(viewer.audio_track.wait(), 15)
        await wait_until(lambda: viewer.capture.video, 15, "the first decoded frame")
        await asyncio.sleep(0.5)

        t_speech = time.monotonic()
        await session.generate_reply(user_input="hello").wait_for_playout()
        await session.say("clicks 2").wait_for_playout()
        t_end = time.monotonic()
        jitter_ms = await viewer.audio_jitter_buffer_ms()
        await asyncio.sleep(0.5)  # the measuring window ends before the next reply starts

        handle = session.say("tone 6")
        await asyncio.sleep(1.5)
        handle.interrupt()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(handle.wait_for_playout(), 5)
        await asyncio.sleep(0.3)
        # The worker's face goes to the viewers, not back to the agent that asked for it.
        await assert_agent_receives_none_of_its_avatar(agent_room_, avatar.avatar_identity)
    finally:
        await viewer.aclose()
        await shut_down(session, avatar, agent_room_)

    cap = viewer.capture
    offsets = pair_offsets(
        audio_onsets(cap, after=t_speech, before=t_end + 0.5),
        flash_onsets(cap, after=t_speech, before=t_end + 0.5),
        fps=25.0,
    )
    sent = len(click_times(3.0)) + len(click_times(2.0))
    offsets_ms = sorted(round(o * 1000, 1) for o in offsets)
    print(f"\ndispatch: {len(offsets)}/{sent} clicks paired, offsets {offsets_ms} ms,"
          f" viewer's audio jitter buffer {jitter_ms} ms")  # fmt: skip
    assert delivered_fps(cap, after=t_speech + 0.5, before=t_end) >= 20.0
    assert len(offsets) >= 0.9 * sent
    assert -45.0 <= offsets_ms[len(offsets_ms) // 2] <= 125.0
    assert [interrupted for interrupted, _ in events] == [False, False, True]
    assert events[0][1] == pytest.approx(3.0, abs=0.15)
    assert events[1][1] == pytest.approx(2.0, abs=0.15)
    assert 0.5 < events[2][1] < 6.0


async def test_avatar_leaves_within_2s_when_the_agent_leaves(livekit_server, avatar_worker):
    async with agent_room(
        livekit_server, "dispatch-leave", watcher_cls=Watcher,
        mode="dispatch", agent_name=avatar_worker.agent_name,
    ) as r:  # fmt: skip
        identity = r.avatar.avatar_identity
        await r.watcher.wait_video(identity)
        left_at = time.monotonic()
        await r.agent_room.disconnect()
        # Asked of the server: other clients hear of departures a second or more late.
        gone_at = await _left_room_at(livekit_server, r.room_name, identity)
        assert gone_at is not None, "the avatar stayed after the agent left"
        assert gone_at - left_at <= 2.0


@pytest.mark.parametrize("leaves_when_asked", [True, False], ids=["leaves", "stays"])
async def test_churn_the_agent_asks_its_avatar_to_leave_and_removes_it_only_if_it_stays(
    livekit_server, leaves_when_asked
):
    """A participant the server removes keeps its tracks for the rest of its process
    (rust-sdks#1443), so the agent asks first. An avatar that stays (a worker from before
    the request existed, or a wedged one) is removed 2 s later."""
    from livekit_avatar_plugin._dispatch.client import DispatchedAvatar
    from livekit_avatar_plugin._dispatch.protocol import LEAVE_ATTRIBUTE, LEAVE_WAIT_S

    info = livekit_server
    name = f"leave-{uuid.uuid4().hex[:6]}"
    agent, avatar = rtc.Room(), rtc.Room()
    await agent.connect(info.url, make_token(info, name, "agent", agent=True))
    await avatar.connect(info.url, make_token(info, name, "avatar", agent=True))
    left: list[rtc.DisconnectReason.ValueType] = []
    avatar.on("disconnected", left.append)
    leaving: list[asyncio.Task[None]] = []

    def asked(changed: dict[str, str], participant: rtc.Participant) -> None:
        if leaves_when_asked and participant.identity == "avatar" and LEAVE_ATTRIBUTE in changed and not leaving:
            leaving.append(asyncio.create_task(avatar.disconnect()))

    avatar.on("participant_attributes_changed", asked)
    dispatched = DispatchedAvatar(
        agent, AvatarJobRequest(agent_identity="agent", avatar_identity="avatar"),
        agent_name="none", url=info.url, api_key=info.api_key, api_secret=info.api_secret, timeout_s=1.0,
    )  # fmt: skip
    dispatched._last_beat = time.monotonic()  # alive, as its heartbeats would say
    try:
        await wait_until(lambda: "avatar" in agent.remote_participants, 5, "the agent sees the avatar")
        began = time.monotonic()
        await dispatched.aclose()
        took = time.monotonic() - began
        assert await _left_room_at(info, name, "avatar", timeout=1.0) is not None
        assert avatar.local_participant.attributes.get(LEAVE_ATTRIBUTE) == "1"
        if leaves_when_asked:
            assert leaving, "the avatar never saw the request"
            await asyncio.wait_for(leaving[0], 10)
            assert rtc.DisconnectReason.PARTICIPANT_REMOVED not in left, left
            assert took < 1.0, took
        else:
            await wait_until(lambda: bool(left), 10, "the avatar's room reports its removal")
            assert left == [rtc.DisconnectReason.PARTICIPANT_REMOVED], left
            assert LEAVE_WAIT_S <= took < LEAVE_WAIT_S + 1.5, took
    finally:
        await avatar.disconnect()
        await agent.disconnect()


async def test_worker_leaves_on_its_own_when_the_agent_goes(livekit_server, avatar_worker):
    """No AvatarSession removes it here: the worker notices the agent left by itself."""
    info = livekit_server
    room_name = f"dispatch-alone-{uuid.uuid4().hex[:8]}"
    agent = rtc.Room()
    await agent.connect(info.url, make_token(info, room_name, "plain-agent", agent=True))
    watcher = Watcher()
    await watcher.room.connect(info.url, make_token(info, room_name, "user-alone"))
    request = AvatarJobRequest(agent_identity="plain-agent", avatar_identity="avatar-alone")
    try:
        async with api.LiveKitAPI(info.url, info.api_key, info.api_secret) as lk:
            await lk.agent_dispatch.create_dispatch(
                api.CreateAgentDispatchRequest(
                    agent_name=avatar_worker.agent_name,
                    room=room_name,
                    metadata=request.model_dump_json(),
                )
            )
        await watcher.wait_video("avatar-alone", timeout=15)
        left_at = time.monotonic()
        await agent.disconnect()
        gone_at = await _left_room_at(info, room_name, "avatar-alone")
        assert gone_at is not None, "the avatar stayed after the agent left"
        print(f"\navatar left {gone_at - left_at:.2f} s after the agent")
        assert gone_at - left_at <= 2.0
    finally:
        await agent.disconnect()
        await watcher.room.disconnect()


async def test_no_worker_fails_over_to_audio_only(livekit_server, caplog):
    t0 = time.monotonic()
    nobody = f"nobody-{uuid.uuid4().hex[:6]}"
    async with agent_room(
        livekit_server, "dispatch-none", replies=("tone 1",),
        mode="dispatch", agent_name=nobody, dispatch_timeout_s=2.0,
    ) as r:  # fmt: skip
        assert 2.0 <= time.monotonic() - t0 < 6.0
        assert "no avatar worker registered as 'nobody-" in caplog.text
        # The dispatch was withdrawn, so no worker joins this room later.
        async with api.LiveKitAPI(
            livekit_server.url, livekit_server.api_key, livekit_server.api_secret
        ) as lk:
            dispatches = await lk.agent_dispatch.list_dispatch(r.room_name)
            assert not [d for d in dispatches if d.agent_name == nobody]
        # The agent is heard from its own participant.
        await r.session.generate_reply(user_input="hi").wait_for_playout()
        await wait_until(lambda: r.agent_id in r.watcher.audio, 5, "the agent's own audio track")
        assert isinstance(r.watcher, AudioWatcher)


async def test_a_job_that_never_gets_its_face_up_is_dispatched_again(
    livekit_server, caplog, monkeypatch
):
    """A worker took the job and hangs; a second worker gets the job ~8 s later."""
    import threading

    from livekit_avatar_plugin._dispatch.client import DispatchedAvatar

    from .conftest import WorkerProcess

    # The server reports a job for the hung attempt (as it did when a worker's room
    # connection hung under load), so only the "taken but never up" rule can help.
    async def always_taken(self, dispatch_id: str) -> bool:
        return True

    monkeypatch.setattr(DispatchedAvatar, "_has_job", always_taken)
    caplog.set_level("INFO", logger="livekit_avatar_plugin.dispatch")
    name = f"avatar-stuck-{uuid.uuid4().hex[:6]}"
    stuck = WorkerProcess(
        livekit_server, agent_name=name, capacity=1,
        face_pipeline="tests.pattern_pipeline:NeverReadyPipeline",
    )  # fmt: skip
    workers = [stuck]
    try:
        stuck.wait_registered()

        def second_worker_once_the_first_is_stuck() -> None:
            deadline = time.monotonic() + 20
            while "received job request" not in stuck.log() and time.monotonic() < deadline:
                time.sleep(0.1)
            workers.append(WorkerProcess(livekit_server, agent_name=name))

        helper = threading.Thread(target=second_worker_once_the_first_is_stuck, daemon=True)
        helper.start()
        t0 = time.monotonic()
        async with agent_room(
            livekit_server, "dispatch-stuck", replies=("tone 1",),
            mode="dispatch", agent_name=name, dispatch_timeout_s=30.0,
        ) as r:  # fmt: skip
            joined_s = time.monotonic() - t0
            assert "has not joined; asking LiveKit again" in caplog.text
            assert 8.0 <= joined_s < 20.0, joined_s
            # the hung attempt was withdrawn: only the working avatar is in the room
            working = r.avatar.avatar_identity
            assert working.endswith("-r1"), working
            hung = working.removesuffix("-r1")
            await wait_until(
                lambda: hung not in r.agent_room.remote_participants
                and working in r.agent_room.remote_participants,
                10, "only the working avatar in the room",
            )  # fmt: skip
        helper.join(timeout=5)
    finally:
        for worker in workers:
            worker.stop()


# -- playback reports checked against the avatar's beats (no server needed) ------------------


def _dispatched_avatar():
    from livekit_avatar_plugin._dispatch.client import DispatchedAvatar

    request = AvatarJobRequest(agent_identity="agent", avatar_identity="avatar")
    return DispatchedAvatar(
        rtc.Room(), request, agent_name="w", url="ws://x", api_key="k", api_secret="s", timeout_s=1.0
    )


async def test_heavy_loss_a_dispatched_avatars_reports_are_taken_once_each_as_its_beats_count_them():
    from livekit_avatar_plugin._dispatch.protocol import Beat

    avatar = _dispatched_avatar()
    taken: list[float] = []
    seq = iter(range(1000))
    lag = dict(ready=True, begun=1, open=False, received_s=0.0, heard_s=0.0, starving_s=0.0, uplink_loss=0.0)

    sent: list[tuple[float, bool]] = []

    def beat() -> None:
        avatar._take_beat(
            Beat(seq=next(seq), reports=len(sent), recent_reports=sent[-8:], **lag), time.monotonic()
        )

    def report(position: float, interrupted: bool = False) -> None:
        avatar.judge_report(position, interrupted, lambda: taken.append(position))

    beat()
    report(1.5)  # before the beat that counts it
    assert taken == []
    sent.append((1.5, False))
    beat()
    assert taken == [1.5]
    report(1.5)  # LiveKit's retry of it: no beat ever counts a second one
    for _ in range(9):
        beat()
    assert taken == [1.5]
    beat()
    assert taken == [1.5]  # dropped after ten beats
    sent.append((0.4, True))
    beat()
    report(0.4, True)
    assert taken == [1.5, 0.4]
    # The avatar ahead of its reports: two more sent, a repeat of the last one arrives
    # first, then both in order. The beats' record of each decides.
    sent += [(2.0, False), (0.7, True)]
    beat()
    report(0.4, True)
    report(2.0)
    report(0.7, True)
    assert taken == [1.5, 0.4, 2.0, 0.7]


async def test_a_worker_whose_beats_do_not_count_reports_has_every_report_taken():
    from livekit_avatar_plugin._dispatch.protocol import Beat

    avatar = _dispatched_avatar()
    taken: list[float] = []
    lag = dict(ready=True, begun=1, open=False, received_s=0.0, heard_s=0.0, starving_s=0.0, uplink_loss=0.0)
    avatar._take_beat(Beat(seq=0, **lag), time.monotonic())
    for position in (1.0, 1.0):
        avatar.judge_report(position, False, lambda p=position: taken.append(p))
    assert taken == [1.0, 1.0]
