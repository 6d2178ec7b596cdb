"""The avatar worker stops LiveKit's native library from forwarding its debug log to Python.

Process-wide, so each case runs in its own interpreter: it joins a room on the real
server, publishes a track, sends a second of audio and reports how many libwebrtc records
reached Python's ``livekit`` logger. ``LIVEKIT_RTC_DEBUG=1`` makes the SDK's handler pass
them on instead of dropping them, so the count shows what crossed into Python.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from livekit_avatar_plugin import _native_logs

from .av_harness import make_token

REPO_ROOT = Path(__file__).resolve().parent.parent

_PUBLISH_ONE_SECOND = textwrap.dedent(
    """
    import asyncio, json, logging, sys
    from livekit import rtc

    url, token, quiet = sys.argv[1], sys.argv[2], sys.argv[3] == "quiet"
    took_effect = None
    if quiet:
        from livekit_avatar_plugin._native_logs import stop_forwarding_native_logs
        took_effect = stop_forwarding_native_logs()

    messages = []

    class Keep(logging.Handler):
        def emit(self, record):
            messages.append(record.getMessage())

    native = logging.getLogger("livekit")
    native.setLevel(logging.DEBUG)
    native.addHandler(Keep())

    async def main():
        room = rtc.Room()
        await room.connect(url, token)
        source = rtc.AudioSource(48000, 1)
        track = rtc.LocalAudioTrack.create_audio_track("tone", source)
        publication = await room.local_participant.publish_track(track)
        silence = rtc.AudioFrame(bytes(960), 48000, 1, 480)
        for _ in range(100):
            await source.capture_frame(silence)
        await room.disconnect()
        return bool(publication.sid)

    published = asyncio.run(main())
    print(json.dumps({
        "took_effect": took_effect,
        "published": published,
        "libwebrtc_records": sum("libwebrtc" in m for m in messages),
    }))
    """
)


def _publish(livekit_server, room: str, mode: str) -> tuple[dict, str]:
    token = make_token(livekit_server, room, f"publisher-{mode}")
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), LIVEKIT_RTC_DEBUG="1")
    env.pop("RUST_LOG", None)
    done = subprocess.run(
        [sys.executable, "-c", _PUBLISH_ONE_SECOND, livekit_server.url, token, mode],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1]), done.stderr


@pytest.mark.livekit_server
def test_the_worker_keeps_libwebrtcs_debug_log_out_of_python(livekit_server):
    loud, _ = _publish(livekit_server, "native-logs-loud", "loud")
    quiet, stderr = _publish(livekit_server, "native-logs-quiet", "quiet")

    # The SDK as it comes: libwebrtc's verbose log crosses into Python record by record.
    assert loud["published"]
    assert loud["libwebrtc_records"] > 50, loud
    # Capture off: the same session works, and nothing of it reaches Python...
    assert quiet == {"took_effect": True, "published": True, "libwebrtc_records": 0}
    # ...nor stderr below the default RUST_LOG level (warnings).
    assert not [line for line in stderr.splitlines() if " DEBUG " in line or " TRACE " in line]


def test_the_worker_command_turns_native_log_capture_off(monkeypatch):
    from livekit_avatar_plugin.cli import worker as worker_cli

    calls = []
    monkeypatch.setattr(worker_cli, "stop_forwarding_native_logs", lambda: calls.append(1))
    monkeypatch.setattr(worker_cli.asyncio, "run", lambda coro: coro.close())
    args = worker_cli.argparse.Namespace(
        agent_name="a", capacity=1, face_pipeline=None, avatar="default",
        url="ws://127.0.0.1:1", api_key="k", api_secret="s" * 32, http_port=0,
        server_target_load=0.7, drain_timeout=1.0,
    )  # fmt: skip
    assert worker_cli._run(args) == 0
    assert calls == [1]


def _records_at_info(logger):
    import logging

    seen: list[logging.LogRecord] = []
    handler = logging.Handler(logging.INFO)
    handler.emit = seen.append  # type: ignore[method-assign]
    logger.addHandler(handler)
    return seen, handler


def test_lk_rust_log_of_a_negotiation_on_a_closed_connection_is_demoted_and_others_are_not():
    import logging

    from livekit.rtc.log import logger as rtc_logger  # where LiveKit's Rust core logs land

    assert rtc_logger.name == "livekit", "LiveKit's native logs moved to another logger"
    seen, handler = _records_at_info(rtc_logger)
    _native_logs.quiet_benign_errors()
    _native_logs.quiet_benign_errors()  # once per process, however often sessions start
    try:
        assert rtc_logger.filters.count(_native_logs._FILTERS["livekit"]) == 1
        target = "livekit::rtc_engine::rtc_session"
        closed = (
            'failed to negotiate the publisher: Rtc(RtcError { error_type: InvalidState, message: '
            '"Failed to set local offer sdp: Called in wrong state: closed" })'
        )
        other = 'failed to negotiate the publisher: Rtc(RtcError { error_type: Internal, message: "x" })'
        also_closed = (
            'failed to negotiate the publisher: Rtc(RtcError { error_type: InvalidState, message: '
            '"CreateOffer called when PeerConnection is closed." })'
        )
        rtc_logger.error("%s:%s:%s - %s", target, 2526, target, closed)
        rtc_logger.error("%s:%s:%s - %s", target, 2526, target, also_closed)
        rtc_logger.error("%s:%s:%s - %s", target, 2526, target, other)
        assert [r.getMessage().endswith(other) for r in seen] == [True]
        assert seen[0].levelno == logging.ERROR
    finally:
        rtc_logger.removeHandler(handler)


def test_lk_clear_buffer_to_a_departed_avatar_is_demoted_without_its_traceback():
    import logging

    from livekit import rtc
    from livekit.agents.log import logger as agents_logger  # where _datastream_io logs

    assert agents_logger.name == "livekit.agents", "LiveKit's agent logs moved to another logger"
    seen, handler = _records_at_info(agents_logger)
    debug: list[logging.LogRecord] = []
    low = logging.Handler(logging.DEBUG)
    low.emit = debug.append  # type: ignore[method-assign]
    agents_logger.addHandler(low)
    level = agents_logger.level
    agents_logger.setLevel(logging.DEBUG)
    _native_logs.quiet_benign_errors()
    try:
        gone = rtc.RpcError(rtc.RpcError.ErrorCode.RECIPIENT_DISCONNECTED, "Recipient disconnected")
        failed = rtc.RpcError(rtc.RpcError.ErrorCode.RESPONSE_TIMEOUT, "Response timeout")
        for exc in (gone, failed):
            try:
                raise exc
            except rtc.RpcError as e:
                agents_logger.error("failed to perform clear buffer rpc", exc_info=e)
        assert [r.exc_info[1].code for r in seen] == [rtc.RpcError.ErrorCode.RESPONSE_TIMEOUT]
        quiet = next(r for r in debug if r.levelno == logging.DEBUG)
        assert quiet.exc_info is None and "Recipient disconnected" in quiet.getMessage()
    finally:
        agents_logger.removeHandler(handler)
        agents_logger.removeHandler(low)
        agents_logger.setLevel(level)
