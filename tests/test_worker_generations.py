"""Worker generations: ``livekit-avatar worker --max-jobs N`` hands over to a fresh process
every N jobs, so a worker that has served many sessions holds what a new one holds.

Real server, real ``livekit-avatar worker`` processes (test-pattern face), real agents.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import time

import psutil
import pytest

from livekit_avatar_plugin._dispatch.protocol import AvatarJobRequest
from livekit_avatar_plugin._dispatch.supervisor import Slots
from livekit_avatar_plugin._dispatch.worker import AvatarWorker, AvatarWorkerOptions
from livekit_avatar_plugin.local_server import _free_port

from .churn import one_session, run_worker_churn
from .rooms import wait_until
from .test_dispatch import _HeldJobRequest


async def test_churn_generations_share_the_machines_slots():
    """The retiring generation's avatars count against the fresh one's capacity."""
    options = AvatarWorkerOptions(capacity=4, url="ws://127.0.0.1:1", api_key="key", api_secret="secret")
    slots = Slots(4)
    old = AvatarWorker(options, slots=slots.for_generation(0))
    new = AvatarWorker(options, slots=slots.for_generation(1))
    release = asyncio.Event()
    metadata = AvatarJobRequest(agent_identity="agent", avatar_identity="avatar").model_dump_json()
    requests = [_HeldJobRequest(n, release, metadata) for n in range(6)]
    pending = [asyncio.create_task((old if n < 3 else new)._on_request(req)) for n, req in enumerate(requests)]
    await wait_until(lambda: all(req.answer for req in requests), 5, "every request answered")
    answers = [req.answer for req in requests]
    assert answers.count("accepted") == 4 and answers.count("declined") == 2, answers
    assert slots.taken() == 4
    # A generation that died gives its slots back through the supervisor.
    slots.clear(0)
    assert slots.taken() == 1
    release.set()
    await asyncio.gather(*pending, return_exceptions=True)
    assert slots.taken() == 0


@pytest.mark.livekit_server
@pytest.mark.timeout(300)
async def test_churn_a_worker_hands_over_to_a_fresh_process_every_max_jobs(livekit_server, start_avatar_worker):
    worker = start_avatar_worker("gen-churn", max_jobs=3)
    supervisor = worker.proc.pid
    report = await run_worker_churn(livekit_server, supervisor, worker.agent_name, sequential=8, concurrent=3)
    # Every session had its face and exact playback reports, across the hand-overs.
    assert report.wrong_playback == []
    assert len(worker.rendered()) == 11
    pids = worker.generations()
    assert len(pids) >= 3, worker.log()
    # The generations that retired have exited; the worker holds what it held after one session.
    assert [pid for pid in pids[:-1] if psutil.pid_exists(pid) and psutil.Process(pid).status() != "zombie"] == []
    assert report.leaked() == {}, (report.after_first, report.after_all)
    print(f"\nworker RSS {report.after_first.rss_mb:.0f} -> {report.after_all.rss_mb:.0f} MB; {len(pids)} generations")
    assert report.after_all.rss_mb <= report.after_first.rss_mb * 1.05
    log = worker.log()
    assert "retiring after" in log and " died " not in log, log


@pytest.mark.livekit_server
@pytest.mark.timeout(240)
async def test_churn_one_worker_process_sessions_leave_nothing_behind(livekit_server, start_avatar_worker):
    """Without generations (``--max-jobs 0``): the agent asks each avatar to leave rather
    than having the server remove it, which would strand its tracks and one native
    ``AudioSourceCapture`` thread per session (rust-sdks#1443)."""
    worker = start_avatar_worker("one-proc-churn", max_jobs=0)
    report = await run_worker_churn(livekit_server, worker.proc.pid, worker.agent_name, sequential=6, concurrent=0)
    assert report.wrong_playback == []
    assert len(worker.generations()) == 0 and len(worker.rendered()) == 6
    assert report.leaked() == {}, (report.extra_threads(), report.after_first, report.after_all)
    assert "AudioSourceCapt" not in report.after_all.thread_names
    log = worker.log()
    assert len(re.findall(r"leaving room \S+: agent \S+ asked the avatar to leave", log)) == 6, log
    print(f"\nworker RSS {report.after_first.rss_mb:.0f} -> {report.after_all.rss_mb:.0f} MB")
    assert report.after_all.rss_mb <= report.after_first.rss_mb * 1.05


async def _get(url: str) -> tuple[int, str]:
    import aiohttp

    async with aiohttp.ClientSession() as http, http.get(url) as response:
        return response.status, await response.text()


@pytest.mark.livekit_server
@pytest.mark.timeout(180)
async def test_churn_a_fixed_health_port_answers_across_hand_overs(livekit_server, start_avatar_worker):
    """Two generations cannot both hold a fixed port: the supervisor serves it."""
    port = _free_port()
    worker = start_avatar_worker("gen-health", max_jobs=1, http_port=port)
    assert await _get(f"http://127.0.0.1:{port}/") == (200, "OK")
    for i in range(3):
        assert await one_session(livekit_server, i, 128, mode="dispatch", agent_name=worker.agent_name) is None
    await wait_until(lambda: len(worker.generations()) >= 3, 20, "a generation per job")
    await wait_until(lambda: worker.log().count("registered worker") >= 3, 20, "the third registered")
    status, text = await _get(f"http://127.0.0.1:{port}/")
    assert status == 200, text
    info = json.loads((await _get(f"http://127.0.0.1:{port}/worker"))[1])
    assert info["agent_name"] == "gen-health" and info["capacity"] == 4
    assert any(g["registered"] and not g["retiring"] for g in info["generations"]), info
    assert " died " not in worker.log(), worker.log()


@pytest.mark.livekit_server
@pytest.mark.timeout(180)
async def test_recover_a_worker_generation_that_dies_is_replaced(livekit_server, start_avatar_worker):
    worker = start_avatar_worker("gen-crash", max_jobs=50)
    assert await one_session(livekit_server, 0, 128, mode="dispatch", agent_name=worker.agent_name) is None
    [first] = worker.generations()
    os.kill(first, signal.SIGKILL)
    await wait_until(lambda: len(worker.generations()) == 2, 20, "a new generation started")
    await wait_until(lambda: worker.log().count("registered worker") == 2, 30, "the new generation registered")
    assert "worker generation 0 died" in worker.log()
    # The slot the dead generation held is free again: the next session gets a face.
    assert await one_session(livekit_server, 1, 128, mode="dispatch", agent_name=worker.agent_name) is None
    assert len(worker.rendered()) == 2


@pytest.mark.livekit_server
@pytest.mark.timeout(180)
async def test_recover_a_successor_that_cannot_start_leaves_the_old_generation_serving(
    livekit_server, start_avatar_worker, tmp_path, monkeypatch
):
    monkeypatch.setenv("AVATAR_TEST_PROCESS_COUNT", str(tmp_path / "count"))
    worker = start_avatar_worker("gen-stuck", max_jobs=1, face_pipeline="tests.pattern_pipeline:first_process_only")
    for i in range(3):
        assert await one_session(livekit_server, i, 128, mode="dispatch", agent_name=worker.agent_name) is None
    await wait_until(lambda: "worker generation 1 died" in worker.log(), 20, "the successor failed")
    # Every job was served by the first generation; one successor was tried, not one a job.
    assert len(worker.rendered()) == 3
    assert len(worker.generations()) == 2, worker.log()  # the first, and the one that failed
    assert worker.log().count("worker generation 0 has served") == 1
    assert "retiring" not in worker.log()


@pytest.mark.livekit_server
@pytest.mark.timeout(120)
async def test_recover_no_generation_outlives_a_killed_supervisor(livekit_server, start_avatar_worker):
    """A supervisor killed outright takes its generation with it: nothing renders on unseen."""
    worker = start_avatar_worker("gen-orphan", max_jobs=50)
    [generation] = worker.generations()
    worker.kill()
    deadline = time.monotonic() + 10
    while psutil.pid_exists(generation) and psutil.Process(generation).status() != "zombie":
        assert time.monotonic() < deadline, "the generation outlived its supervisor"
        await asyncio.sleep(0.1)
