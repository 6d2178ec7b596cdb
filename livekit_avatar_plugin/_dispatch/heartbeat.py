"""The dispatched avatar's side of its beats: alive, how it keeps up, give-ups answered."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from livekit import api, rtc
from pydantic import ValidationError

from .._handover import LOSSY, STALL_S
from .._publisher import AvatarPublisher
from .protocol import (
    ALIVE_ATTRIBUTE,
    ALIVE_S,
    GAVE_UP_ATTRIBUTE,
    GIVE_UP_ATTRIBUTE,
    GIVE_UP_TOPIC,
    HEARTBEAT_S,
    HEARTBEAT_TOPIC,
    AvatarJobRequest,
    Beat,
    GaveUp,
    GiveUp,
    set_avatar_attribute,
)

logger = logging.getLogger("livekit_avatar_plugin.worker")

# A give-up is announced by this many beats this far apart, ahead of its reliable
# playback report: lost once, that report holds up every packet sent after it on the
# same link (the congestion window is shared) for a second or more.
_URGENT_BEATS = 3
_URGENT_S = 0.05


class Heartbeat:
    """Beats to the agent every ``HEARTBEAT_S`` on a lossy packet (see ``protocol``), and
    gives a reply up when the agent asks (by packet or attribute, whichever comes first),
    or by itself when it starves inside a reply on a lossy link: ``_handover``'s rule,
    without the agent's count of what it sent, so slow speech synthesis on a lossy link
    is handed over too, which costs nothing. Every beat repeats the last answer and
    give-up, so a lost one costs the agent a beat, never the answer; a request asked
    again is not redone."""

    def __init__(
        self, room: rtc.Room, request: AvatarJobRequest, publisher: AvatarPublisher, server: api.LiveKitAPI
    ) -> None:
        self._room = room
        self._server = server
        self._identity = request.avatar_identity
        self._agent = request.agent_identity
        self._publisher = publisher
        self._alive_said_at = -float("inf")
        self._saying_alive: asyncio.Task[None] | None = None  # lk.avatar.alive, on a lossy link
        self._saying: set[asyncio.Future[None]] = set()  # lk.avatar.gave_up
        self._seq = 0
        self._answered = -1
        self._answer: float | None = None
        self._wake = asyncio.Event()
        self._urgent = 0  # beats left to send at _URGENT_S: a give-up to announce
        self._foreign_logged = False
        publisher.give_up_report_delay_s = _URGENT_S * _URGENT_BEATS
        publisher.on_report = self._wake.set  # the agent checks each report against a beat

    async def run(self) -> None:
        self._room.on("data_received", self._on_data)
        self._room.on("participant_attributes_changed", self._on_attributes)
        try:
            while True:
                await self._send()
                self._wake.clear()
                self._urgent = max(0, self._urgent - 1)
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), _URGENT_S if self._urgent else HEARTBEAT_S)
        finally:
            self._room.off("data_received", self._on_data)
            self._room.off("participant_attributes_changed", self._on_attributes)
            for task in [self._saying_alive, *self._saying]:
                if task is not None:
                    task.cancel()

    async def _send(self) -> None:
        lag = self._publisher.lag()
        if lag.open and lag.starving_s >= STALL_S and lag.uplink_loss >= LOSSY and self._publisher.awaiting_audio:
            self._publisher.give_up(lag.begun - 1)
            self._announce()
            lag = self._publisher.lag()
        beat = Beat(
            seq=self._seq, ready=lag.ready, begun=lag.begun, open=lag.open,
            received_s=lag.received_s, heard_s=lag.heard_s, starving_s=lag.starving_s,
            uplink_loss=lag.uplink_loss, answered=self._answered, answer=self._answer,
            gave_up=self._publisher.last_given_up, reports=self._publisher.reports_sent,
            recent_reports=list(self._publisher.recent_reports),
        )  # fmt: skip
        self._seq += 1
        now = time.monotonic()
        saying = self._saying_alive is not None and not self._saying_alive.done()
        if lag.uplink_loss >= LOSSY and now - self._alive_said_at >= ALIVE_S and not saying:
            self._alive_said_at = now
            self._saying_alive = asyncio.create_task(self._set_attribute(ALIVE_ATTRIBUTE, str(beat.seq)))
        with contextlib.suppress(Exception):  # a reconnecting room: the next beat tries again
            await self._room.local_participant.publish_data(
                beat.model_dump_json().encode(),
                reliable=False,
                destination_identities=[self._agent],
                topic=HEARTBEAT_TOPIC,
            )

    async def _set_attribute(self, key: str, value: str) -> None:
        """Our own attribute, through the server's API (the signalling path, not the data
        channel); the beats say the same, so a failure costs only time."""
        try:
            await set_avatar_attribute(self._server, self._room.name, self._identity, key, value)
        except Exception as exc:  # noqa: BLE001 - the beats still say it
            logger.debug("could not set %s through the server: %r", key, exc)

    def _on_data(self, packet: rtc.DataPacket) -> None:
        if packet.topic != GIVE_UP_TOPIC:
            return
        sender = packet.participant.identity if packet.participant is not None else None
        if sender != self._agent:
            if not self._foreign_logged:
                self._foreign_logged = True
                logger.warning(
                    "ignored a give-up request from %s, who is not the agent",
                    sender or "a participant the room does not list",
                )
            return
        self._asked(packet.data)

    def _on_attributes(self, changed: dict[str, str], participant: rtc.Participant) -> None:
        # Our own attributes: only the server's API (the agent, with its keys) sets them.
        if participant.identity == self._room.local_participant.identity and GIVE_UP_ATTRIBUTE in changed:
            self._asked(changed[GIVE_UP_ATTRIBUTE])

    def _asked(self, data: bytes | str) -> None:
        try:
            request = GiveUp.model_validate_json(data)
        except ValidationError:
            logger.warning("ignored a malformed give-up request (%d bytes)", len(data))
            return
        if request.id <= self._answered:
            return  # asked again: the beats carry the answer
        self._answered, self._answer = request.id, self._publisher.give_up(request.mark)
        self._announce()
        self._wake.set()  # answer now, not at the next beat

    def _announce(self) -> None:
        """Say what was given up in the next beats, sent sooner, and through the server."""
        self._urgent = _URGENT_BEATS
        said = GaveUp(answered=self._answered, answer=self._answer, gave_up=self._publisher.last_given_up)
        task = asyncio.ensure_future(self._set_attribute(GAVE_UP_ATTRIBUTE, said.model_dump_json()))
        self._saying.add(task)
        task.add_done_callback(self._saying.discard)
