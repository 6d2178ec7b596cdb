"""The avatar participant in a real room: A/V sync, playback events, interruption.

Measured at a separate subscriber, with the test-pattern face (flash at each click).
These tests assert behaviour with bounds loose enough for a busy 2-core machine; the
latency targets themselves are measured by ``benchmarks/av_sync.py``.
"""

from __future__ import annotations

import pytest

from .av_harness import run_av_scenario

pytestmark = pytest.mark.livekit_server


@pytest.mark.parametrize(
    ("mode", "quality"), [("participant", "auto"), ("in_process", "auto"), ("participant", "low")]
)
async def test_avatar_av_sync_end_to_end(livekit_server, mode, quality):
    # "low" is one layer, VP8 encoded by the plugin rather than by WebRTC.
    result = await run_av_scenario(livekit_server, mode=mode, quality=quality)
    print("\n" + result.report())

    # Idle frames flow before any speech, so the agent never waits on the video track.
    assert result.idle_frames_before_speech >= 5
    assert result.video_size == (512, 512)
    assert result.same_stream, "audio and video must share one stream name"

    # Frames keep coming at about the configured rate.
    assert result.delivered_fps >= 20.0

    # Every click reaches the subscriber with its flash, in the same frame slot at the
    # sender and within the ITU-R BT.1359 detectability window at the subscriber.
    assert len(result.sender_offsets_ms) == result.clicks_sent
    assert abs(result.sender_median_offset_ms) <= 20.0
    assert result.sender_p95_abs_offset_ms <= 40.0
    assert len(result.offsets_ms) >= 0.9 * result.clicks_sent
    assert -45.0 <= result.median_offset_ms <= 125.0

    # playback_finished for each segment, with the right interrupted flag and position.
    assert [interrupted for interrupted, _ in result.playback_events] == [False, False, True]
    assert result.playback_events[0][1] == pytest.approx(4.0, abs=0.15)
    assert result.playback_events[1][1] == pytest.approx(3.0, abs=0.15)
    assert 0.5 < result.playback_events[2][1] < 6.0

    # The interrupted tone stops at the subscriber, and the mouth stops moving.
    assert result.interruption_to_silence_ms is not None
    assert result.interruption_to_silence_ms <= 500.0
    assert result.interruption_to_still_video_ms is not None
    assert result.interruption_to_still_video_ms <= 500.0
    assert result.first_tts_byte_to_first_frame_ms is not None

    # The session reported its own metrics through LiveKit's metrics events.
    by_event: dict[str, list] = {}
    for m in result.metrics:
        by_event.setdefault(m.event, []).append(m)
    joined = by_event["joined"][0]
    assert 0 < joined.join_latency_s < 10 and 0 < joined.time_to_first_frame_s < 10
    speech = by_event["speech"]
    assert len(speech) == 3  # two clicks segments and the interrupted tone
    assert all(0 <= m.first_audio_to_first_frame_s < 1.0 for m in speech)
    (interruption,) = by_event["interruption"]
    assert 0 <= interruption.interruption_to_silence_s < 0.1
    (closed,) = by_event["closed"]
    assert closed.close_reason == "closed_by_app"
    assert closed.session_duration_s > 5
    assert 20 <= closed.delivered_fps <= 26
