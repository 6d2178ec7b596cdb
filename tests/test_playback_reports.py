"""Playback reports go to the agent when the audio they describe plays, in order."""

from __future__ import annotations

import asyncio
import time

from livekit_avatar_plugin._playback_reports import PlaybackReports


def _recorder() -> tuple[PlaybackReports, list[tuple[str, float]]]:
    sent: list[tuple[str, float]] = []
    return PlaybackReports(lambda _: None), sent


async def test_a_report_goes_at_its_time_and_never_before_an_earlier_one():
    reports, sent = _recorder()
    now = time.monotonic()

    def log(name: str):
        return lambda: sent.append((name, time.monotonic()))

    reports.at(now + 0.08, log("finished 1"))  # the last audio of segment 1 plays out at +80 ms
    reports.at(now + 0.02, log("started 2"))  # (stamped earlier, but made after it)
    reports.at(now, log("at once"))
    await asyncio.sleep(0.03)
    assert sent == []  # nothing overtakes the first report
    await asyncio.sleep(0.1)
    assert [name for name, _ in sent] == ["finished 1", "started 2", "at once"]
    assert sent[0][1] - now >= 0.075


async def test_an_interruption_sends_what_is_pending_then_its_own_report_at_once():
    reports, sent = _recorder()
    now = time.monotonic()
    reports.at(now + 0.5, lambda: sent.append("started"))
    reports.now(lambda: sent.append("finished, interrupted"))
    assert sent == ["started", "finished, interrupted"]
    await asyncio.sleep(0.6)
    assert sent == ["started", "finished, interrupted"]  # nothing is sent twice


async def test_a_coroutine_report_is_handed_to_spawn():
    spawned: list[object] = []

    async def notify() -> None:
        return None

    reports = PlaybackReports(spawned.append)
    reports.at(time.monotonic(), notify)
    await asyncio.sleep(0.01)
    assert len(spawned) == 1 and asyncio.iscoroutine(spawned[0])
    spawned[0].close()
