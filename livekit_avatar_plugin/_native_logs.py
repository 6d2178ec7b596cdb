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


class _ClosedNegotiationFilter(logging.Filter):
    """Demotes to DEBUG the ERROR LiveKit's Rust core logs when a room is left while its
    publisher is mid offer/answer: the connection is already closed, nothing is lost, and
    on shutdown (Ctrl-C a moment after speech starts) it read as a failure."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.ERROR:
            message = record.getMessage()
            if "failed to negotiate the publisher" in message and "wrong state: closed" in message:
                record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return True


_CLOSED_NEGOTIATION = _ClosedNegotiationFilter()


def quiet_closed_negotiation() -> None:
    """Install the filter above on LiveKit's logger (once per process)."""
    logging.getLogger("livekit").addFilter(_CLOSED_NEGOTIATION)
