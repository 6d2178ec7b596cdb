"""The avatar participant in a real room: A/V sync, playback events, interruption.

Measured at a separate subscriber, with the test-pattern face (flash at each click).
"""

from __future__ import annotations

import pytest

from .av_harness import run_av_scenario

pytestmark = pytest.mark.livekit_server


@pytest.mark.parametrize("mode", ["participant", "in_process"])
async def test_avatar_av_sync_end_to_end(livekit_server, mode):
    result = await run_av_scenario(livekit_server, mode=mode)
    print("\n" + result.report())

    # Idle frames flow before any speech, so the agent never waits on the video track.
    assert result.idle_frames_before_speech >= 10
    assert result.video_size == (512, 512)
    assert result.same_stream, "audio and video must share one stream name"

    # Delivered frame rate at the subscriber.
    assert result.delivered_fps >= 24.0

    # Every click found its flash, and lip-sync holds.
    assert len(result.offsets_ms) >= 0.9 * result.clicks_sent
    assert abs(result.median_offset_ms) <= 20.0
    assert result.p95_abs_offset_ms <= 40.0

    # playback_finished for each segment with the right interrupted flag.
    assert [interrupted for interrupted, _ in result.playback_events] == [False, False, True]
    assert result.playback_events[0][1] == pytest.approx(4.0, abs=0.15)
    assert result.playback_events[1][1] == pytest.approx(3.0, abs=0.15)

    # Interruption: the avatar's audio is silent within 150 ms at the subscriber.
    assert result.interruption_to_silence_ms is not None
    assert result.interruption_to_silence_ms <= 150.0
    assert result.first_tts_byte_to_first_frame_ms is not None
