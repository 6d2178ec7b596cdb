"""Churn: a process that has served many avatar sessions behaves like a new one. Fifty in a
row and ten overlapping, each with a whole reply and an interrupted one, with the shipped
face: no thread, descriptor, ONNX session, task or session object more than after the
first, and every ``playback_finished`` exact. ``benchmarks/churn.py`` prints the figures,
RSS included, beside what LiveKit's SDK alone keeps per session."""

from __future__ import annotations

import pytest

from .churn import run_churn


@pytest.mark.livekit_server
@pytest.mark.timeout(900)
async def test_churn_fifty_in_a_row_and_ten_at_once_leak_nothing(livekit_server):
    report = await run_churn(livekit_server, sequential=50, concurrent=10, progress=print)
    print(f"\nchurn: {report.sessions} sessions in {report.seconds:.0f} s; first {report.after_first}; "
          f"last {report.after_all}; RSS {report.rss_growth():+.1%}")
    assert report.wrong_playback == []
    assert report.leaked() == {}, report.extra_threads()
    assert report.after_all.sessions_alive == 0
