"""One transport object per mode: how a session's face reaches the room."""

from __future__ import annotations

from typing import Any

from .base import ServerCredentials, Transport, TransportHooks
from .dispatch import DispatchTransport
from .in_process import InProcessTransport
from .participant import ParticipantTransport

_BY_MODE: dict[str, type[Transport]] = {
    "participant": ParticipantTransport,
    "in_process": InProcessTransport,
    "dispatch": DispatchTransport,
}


def make_transport(mode: str, **kwargs: Any) -> Transport:
    return _BY_MODE[mode](**kwargs)


__all__ = ["ServerCredentials", "Transport", "TransportHooks", "make_transport"]
