"""Heavy loss on the agent-to-avatar link: the agent's voice takes a reply over.

The agent's speech reaches a remote avatar on a reliable data channel. Under heavy loss
its retransmissions back off for seconds while the agent's writes still return at once,
so only the avatar sees the gap: it runs out of audio that the agent has long sent.
:class:`LagWatch` reads the avatar's account of itself (``Transport.lag``): in
``participant`` mode the avatar renders in the agent's process; in ``dispatch`` mode its
beats carry it. When the avatar has been silent for ``STALL_S`` inside a reply while
audio it never received is on its way, or has not begun a reply ``FIRST_S`` after its
audio went out, the avatar is asked to give the reply up (``Transport.give_up``) and
says where it was heard, and the agent's own track says the rest
(``FailoverAudioOutput.hand_over``). The face idles meanwhile and takes the next reply.
A dispatched avatar, whose requests can be held up on the lossy link itself, also gives
a starved reply up by itself and says so in its beats (``Transport.gave_up``). Only on a
lossy link (the server's reports of the avatar's own video, and in ``dispatch``
mode the loss of its beats): slow speech synthesis or a busy CPU starve the avatar too,
and the agent's voice would not help.
"""

from __future__ import annotations

import asyncio
import logging
import time

from ._failover import FailoverAudioOutput
from ._transport.base import Transport

logger = logging.getLogger("livekit_avatar_plugin.handover")

_POLL_S = 0.05
# After an outage (a server restart, the host's network) the stream in flight is broken,
# not late, and both sides rejoin by themselves.
_AFTER_OUTAGE_S = 10.0
# Silence inside a reply before its rest goes to the agent's voice (docs/benchmarks.md).
STALL_S = 0.3
# A reply the avatar has not begun this long after its audio went out.
FIRST_S = 0.6
# Speech sent but not received: less than this, and the link is not to blame.
MISSING_S = 0.3
# Signs of trouble that publish the agent's track ahead of a hand-over, which on a lossy
# link takes longer than the hand-over itself.
_WARM_STALL_S = 0.04  # one frame of silence
_WARM_FIRST_S = 0.15
_WARM_MISSING_S = 0.5  # late, though the avatar still has speech to play
_WARM_AFTER_S = 0.5  # past a reply's first burst
_WARM_UPLINK_LOSS = 0.05  # the avatar shares the agent's host and link
# Below this loss of the avatar's video, a starved avatar is short of CPU, not of speech
# in transit: the agent's voice would not help.
LOSSY = 0.02


class LagWatch:
    """Watches one session's face; hands a reply it falls behind on to the agent."""

    def __init__(self, transport: Transport, output: FailoverAudioOutput) -> None:
        self._transport = transport
        self._output = output
        self._warm = False
        self._down_at = -float("inf")
        self._gone: tuple[int, float] | None = None  # the avatar's last give-up, once seen
        self.handed_over = 0
        output.mark_segment = self._mark

    def _mark(self) -> int | None:
        lag = self._transport.lag()
        return lag.begun if lag is not None else None

    async def run(self) -> None:
        while True:
            await asyncio.sleep(_POLL_S)
            await self.check(time.monotonic())

    async def check(self, now: float) -> None:
        segment = self._output.face_segment()
        gone = self._transport.gave_up()
        if gone != self._gone:  # news: the avatar gave a reply up by itself (dispatch mode)
            self._gone = gone
            if segment is not None and gone is not None and segment.mark == gone[0]:
                if self._output.claim(segment, gone[1]):
                    self.handed_over += 1
                    await self._output.hand_over(segment, gone[1])
                return
        if not self._transport.connected():
            self._down_at = now
        if now - self._down_at < _AFTER_OUTAGE_S:
            return
        lag = self._transport.lag()
        if lag is None or lag.uplink_loss < LOSSY:
            return
        if lag.uplink_loss >= _WARM_UPLINK_LOSS:
            await self._ready()
        if segment is None or not lag.ready or not isinstance(segment.mark, int):
            return
        if lag.open and lag.begun == segment.mark + 1:  # playing it, starved?
            missing = segment.delivered_s - lag.received_s
            late, stall, warm = lag.starving_s, STALL_S, _WARM_STALL_S
            # A reply's audio leaves in a burst; past its first moments, this much of it
            # still on the way means the link is retransmitting.
            if missing >= _WARM_MISSING_S and now - segment.created_at >= _WARM_AFTER_S:
                await self._ready()
        elif not lag.open and lag.begun == segment.mark:  # none of it arrived yet
            missing = segment.delivered_s
            late, stall, warm = now - segment.created_at, FIRST_S, _WARM_FIRST_S
        else:
            return  # played whole: its report is on the way
        if missing < MISSING_S:
            return
        if late >= stall:
            # Claimed first: the avatar's report of the reply it gave up can come before
            # its answer, and must not end the reply for the agent.
            if not self._output.claim(segment, lag.heard_s):
                return
            heard = await self._transport.give_up(segment.mark)
            if heard is None:  # it had finished after all: its report goes through
                self._output.release(segment)
                return
            self.handed_over += 1
            await self._output.hand_over(segment, heard)
        elif late >= warm:
            await self._ready()

    async def _ready(self) -> None:
        if not self._warm:
            self._warm = True
            logger.info("speech to the avatar is running late; readying the agent's own track")
            await self._output.warm()
