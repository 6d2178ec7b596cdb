"""Keep LiveKit's native library from handing every libwebrtc debug line to Python.

The Python SDK starts LiveKit's native (FFI) library with log capture on. The library
then sets its log level to trace, registers with libwebrtc at its most verbose level,
and forwards every record, one callback per record, to Python, which drops all but
warnings and errors. Counted in the concurrency benchmark at N=4: ~1000 callbacks a
second into the avatar worker and ~1900 into the process running the four agents and
viewers. Each one makes a native thread take the GIL (waiting for it while Python
threads render), parse a protobuf and read ``os.environ``, to throw the record away.

With capture off, the library logs through its own ``env_logger`` instead, filtered by
``RUST_LOG`` and written to stderr; we default ``RUST_LOG`` to warnings, which is what the
SDK's Python handler would have shown. The worker process owns its logging, so it turns
capture off; a user's agent process is left as the SDK set it up.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable

logger = logging.getLogger("livekit_avatar_plugin.native_logs")

# What the SDK's own Python handler lets through by default: warnings and errors.
DEFAULT_RUST_LOG = "warn"


def stop_forwarding_native_logs() -> bool:
    """Send the native library's logs to stderr (``RUST_LOG``, default warnings) instead
    of through Python. Process-wide; returns whether it took effect.

    ``RUST_LOG`` is read when the native library starts, so call this before anything
    else in the process uses ``livekit.rtc``, or the library keeps its own default
    (errors only).
    """
    os.environ.setdefault("RUST_LOG", DEFAULT_RUST_LOG)
    try:
        from livekit.rtc import _ffi_client as ffi

        client = ffi.FfiClient.instance
        # Initialising again only replaces the server's settings: same callback, same
        # SDK name and version, capture off.
        client._ffi_lib.livekit_ffi_initialize(
            ffi.ffi_event_callback, False, b"python", ffi.__version__.encode("ascii")
        )
    except Exception as exc:  # noqa: BLE001 - an SDK without these internals keeps capture on
        logger.debug("native log capture left on: %r", exc)
        return False
    return True



def _closed_negotiation(record: logging.LogRecord) -> bool:
    # LiveKit's Rust core, when a room is left while its publisher is mid offer/answer: the
    # connection is already closed and nothing is lost (seen on Ctrl-C just after speech).
    message = record.getMessage()
    return "failed to negotiate the publisher" in message and (
        "wrong state: closed" in message or "PeerConnection is closed" in message
    )


def _clear_buffer_to_a_departed_avatar(record: logging.LogRecord) -> bool:
    # LiveKit's agent side, when it interrupts an avatar that is leaving (a session closed
    # right after an interruption): there is nothing left to clear. Its traceback would
    # also keep the closed session in memory for as long as the record is kept.
    from livekit import rtc  # here: this module is imported before LiveKit's library starts

    exc = record.exc_info[1] if record.exc_info else None
    return (
        record.getMessage() == "failed to perform clear buffer rpc"
        and isinstance(exc, rtc.RpcError)
        and exc.code == rtc.RpcError.ErrorCode.RECIPIENT_DISCONNECTED
    )


class _BenignErrors(logging.Filter):
    """Demotes to DEBUG (without a traceback) the ERRORs LiveKit logs for a harmless race
    at the end of a session, which read as failures."""

    def __init__(self, *tests: Callable[[logging.LogRecord], bool]) -> None:
        super().__init__()
        self._tests = tests

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.ERROR and any(test(record) for test in self._tests):
            if record.exc_info and record.exc_info[1] is not None:
                record.msg = f"{record.getMessage()} ({record.exc_info[1]!r})"
                record.args = None
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
            record.exc_info, record.exc_text = None, None
        return True


# A logger's filters see only its own records, not its children's: one per logger.
_FILTERS = {
    "livekit": _BenignErrors(_closed_negotiation),
    "livekit.agents": _BenignErrors(_clear_buffer_to_a_departed_avatar),
}


def quiet_benign_errors() -> None:
    """Install the filters above on LiveKit's loggers (once per process)."""
    for name, log_filter in _FILTERS.items():
        logging.getLogger(name).addFilter(log_filter)
