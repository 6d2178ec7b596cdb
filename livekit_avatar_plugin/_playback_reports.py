"""Playback reports (started, finished) sent to the agent when the audio they describe
plays, not when it is queued: the agent's state and its transcript follow what is heard."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from typing import Any


class PlaybackReports:
    """Sends each report at its time, in the order they were made: a segment's end,
    due when its last audio has played, never goes after the next segment's start."""

    def __init__(self, spawn: Callable[[Any], None]) -> None:
        self._spawn = spawn  # runs what a report returns (a coroutine becomes a kept task)
        self._due: deque[tuple[float, Callable[[], Any]]] = deque()
        self._sender: asyncio.Task[None] | None = None

    def at(self, when: float, report: Callable[[], Any]) -> None:
        """Send ``report()`` at monotonic time ``when`` (at once if it has passed), after
        every report made before it."""
        self._due.append((when, report))
        if self._sender is None or self._sender.done():
            self._sender = asyncio.create_task(self._send())

    def now(self, report: Callable[[], Any]) -> None:
        """Send what is due and then ``report()`` at once (an interruption: the audio
        still queued is dropped, so nothing waits for it)."""
        self.flush()
        self._spawn(report())

    def flush(self) -> None:
        """Send every pending report now, in order."""
        if self._sender is not None:
            self._sender.cancel()
            self._sender = None
        while self._due:
            self._spawn(self._due.popleft()[1]())

    async def _send(self) -> None:
        while self._due:
            when, report = self._due[0]
            wait = when - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            self._due.popleft()
            self._spawn(report())
