"""When to try bringing a failed face back: soon at first, then less often, and never
more than a few times a minute (a face that keeps dying must not hammer the server)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

from livekit import rtc
from livekit.agents.voice.io import AudioOutput

from ._errors import AvatarSessionError

if TYPE_CHECKING:
    from ._transport import Transport

logger = logging.getLogger("livekit_avatar_plugin.session")

_WINDOW_S = 60.0


class RetrySchedule:
    """Delays before each try: ``first_s``, then ``factor`` times longer up to ``max_s``,
    and never more than ``per_minute`` tries in any 60 s. One schedule serves a whole
    session, so the limit holds across fail-overs too."""

    def __init__(
        self,
        *,
        first_s: float = 1.0,
        factor: float = 4.0,
        max_s: float = 60.0,
        per_minute: int = 3,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._first_s, self._factor, self._max_s = first_s, factor, max_s
        self._per_minute = per_minute
        self._clock = clock
        self._delay = first_s
        self._tries: deque[float] = deque()  # when each try was (or will be) made

    def reset(self) -> None:
        """The face is back: the next outage starts with a quick try again."""
        self._delay = self._first_s

    def next_delay(self) -> float:
        """Seconds to wait before the next try; the try is counted as made then."""
        now = self._clock()
        while self._tries and self._tries[0] <= now - _WINDOW_S:
            self._tries.popleft()
        delay = self._delay
        if len(self._tries) >= self._per_minute:
            # The oldest of the last ``per_minute`` tries must leave the window first.
            delay = max(delay, self._tries[-self._per_minute] + _WINDOW_S - now)
        self._delay = min(self._delay * self._factor, self._max_s)
        self._tries.append(now + delay)
        return delay


async def bring_back(
    transport: Transport, room: rtc.Room, schedule: RetrySchedule, closing: Callable[[], bool]
) -> AudioOutput | None:
    """Restart ``transport``'s face on ``schedule`` until it is back (its audio output is
    returned) or the session closes or loses its room (None)."""
    started = time.monotonic()
    tries = 0
    while not closing() and room.isconnected():
        await asyncio.sleep(schedule.next_delay())
        if closing():
            return None
        tries += 1
        try:
            output = await transport.restart(room)
        except AvatarSessionError as exc:
            logger.warning("avatar not back yet (try %d): %s", tries, exc)
            continue
        schedule.reset()
        logger.info("avatar back on screen after %.1f s (try %d)", time.monotonic() - started, tries)
        return output
    return None
