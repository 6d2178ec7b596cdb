"""The agent's end of a dispatched avatar: ask LiveKit for it, wait for it, let it go."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable

from livekit import api, rtc
from livekit.agents.voice.io import AudioOutput

from .._errors import AvatarError
from .._publisher import Lag
from .protocol import (
    ALIVE_ATTRIBUTE,
    GAVE_UP_ATTRIBUTE,
    GIVE_UP_ATTRIBUTE,
    GIVE_UP_TOPIC,
    HEARTBEAT_SILENT_S,
    HEARTBEAT_TOPIC,
    LEAVE_ATTRIBUTE,
    LEAVE_WAIT_S,
    AvatarJobRequest,
    Beat,
    GaveUp,
    GiveUp,
    server_lists,
    set_avatar_attribute,
)

logger = logging.getLogger("livekit_avatar_plugin.dispatch")

_POLL_S = 0.1
# livekit-server does not queue a dispatch that no worker could take at that instant (all
# at capacity, or a worker's "full" status up to 2.5 s stale): it drops it. A dispatch
# with no job after this long is asked again, under a fresh avatar identity, so a late
# start of the first one can never collide with the second; the loser is withdrawn.
_REDISPATCH_AFTER_S = 2.0
# A worker can take a job and still never join: on a saturated machine LiveKit's FFI has
# been seen to give up a room connection it was making ("timed out waiting for
# ReadyForRoomEventRequest"), and a worker can die mid-start. An attempt whose avatar has
# not published video this long after its dispatch is therefore asked again as well (a
# normal start takes 1.5-3 s, ~6 s on a saturated machine).
_STUCK_AFTER_S = 8.0
# After the agent's own connection was down, the avatar's is likely coming back too (a
# server restart): its beats get this long to resume.
_RECONNECT_GRACE_S = 6.0
# Removing the avatar and deleting the dispatch are courtesies on the way out; a server
# that does not answer must not hold the agent's shutdown.
_API_TIMEOUT_S = 3.0
# The beats' own loss is measured over this window (20 beats).
_BEAT_LOSS_WINDOW_S = 2.0
# A playback report no beat vouches for after this many beats repeats an earlier one.
_REPORT_WAIT_BEATS = 10
# A give-up request's lossy packet is sent again this often until a beat answers it.
_GIVE_UP_RESEND_S = 0.05
# On a link that has been losing beats, a reliable message lost twice holds the beats up
# behind it for seconds (the congestion window is shared): silence means death only
# after this long, for this long after the last lossy window.
_SILENT_ON_LOSSY_LINK_S = 6.0
_LOSSY_BEATS = 0.05
_LOSSY_FOR_S = 10.0


class AvatarDispatchError(AvatarError, RuntimeError):
    """No avatar worker took the job, or LiveKit refused to dispatch it."""


class DispatchedAvatar:
    """Asks LiveKit to dispatch an avatar job into ``room`` and watches the avatar.

    ``start()`` returns once the avatar participant has joined and published video (the
    agent's audio sink waits for that track), or raises :class:`AvatarDispatchError` after
    ``timeout_s``, having withdrawn the dispatch so a late worker does not join a room
    whose agent already speaks by itself.
    """

    def __init__(
        self,
        room: rtc.Room,
        request: AvatarJobRequest,
        *,
        agent_name: str,
        url: str,
        api_key: str,
        api_secret: str,
        timeout_s: float,
    ) -> None:
        self._room = room
        self._request = request
        self._agent_name = agent_name
        self._credentials = (url, api_key, api_secret)
        self._timeout_s = timeout_s
        self._attempts: list[tuple[str, str]] = []  # (dispatch id, avatar identity)
        self._identity = request.avatar_identity
        self._on_left: Callable[[str], None] | None = None
        self._watch: asyncio.Task[None] | None = None
        self._playing_since: float | None = None
        self._last_beat: float | None = None  # armed when the avatar joins
        self._silent_at: float | None = None  # its last heartbeat, once it has gone silent
        self._beat: Beat | None = None  # the newest, and when it came
        self._beat_at = 0.0
        self._beats: deque[tuple[float, int]] = deque()  # (arrival, seq) over the loss window
        self._lossy_at = -float("inf")  # when the beats' loss last reached _LOSSY_BEATS
        self._said: GaveUp | None = None  # the avatar's give-up attribute
        self._give_ups = 0
        self._reports_taken = 0
        self._held: list[list] = []  # [position, interrupted, deliver, beats waited]
        self._answers: dict[int, tuple[int, asyncio.Future[float | None]]] = {}  # id: (mark, answer)
        self._closed = False

    @property
    def identity(self) -> str:
        """The avatar's identity (a retried dispatch joins under a suffixed one)."""
        return self._identity

    async def start(
        self, *, on_left: Callable[[str], None], on_agent_gone: Callable[[], None]
    ) -> None:
        """Dispatch and wait for the avatar.

        Later, ``on_left(detail)`` fires if the avatar leaves, and ``on_agent_gone()`` when
        the agent's own connection is lost: the avatar must then be removed at once, since
        the server tells the avatar about the agent's departure only ~2 s late.
        """
        started = last_dispatch = time.monotonic()
        await self._dispatch(self._request.avatar_identity)
        joined: str | None = None
        next_try = started + _REDISPATCH_AFTER_S
        while joined is None and time.monotonic() - started < self._timeout_s:
            await asyncio.sleep(0.05)
            joined = self._arrived()
            now = time.monotonic()
            if joined is None and now >= next_try:
                next_try = now + _REDISPATCH_AFTER_S
                if now - last_dispatch >= _STUCK_AFTER_S:
                    why = f"the avatar job started {now - last_dispatch:.0f} s ago has not joined"
                elif not await self._has_job(self._attempts[-1][0]):
                    why = "no avatar worker took the job yet"
                else:
                    continue
                logger.info("%s; asking LiveKit again", why)
                base = self._request.avatar_identity
                await self._dispatch(f"{base}-r{len(self._attempts)}")
                last_dispatch = time.monotonic()
        await self._withdraw(keep=joined)
        if joined is None:
            raise AvatarDispatchError(
                f"no avatar worker registered as {self._agent_name!r} joined room "
                f"{self._room.name} within {self._timeout_s:g} s; is `livekit-avatar worker "
                f"--agent-name {self._agent_name}` running against this server, and below "
                "its capacity?"
            )
        self._identity = joined
        self._on_left = on_left
        self._room.on("participant_disconnected", self._participant_left)
        self._room.on("data_received", self._heard)
        self._room.on("participant_attributes_changed", self._avatar_said)
        # A worker of this protocol beats from its join on: one killed before its first
        # beat reached us is silent from here.
        self._last_beat = time.monotonic()
        self._watch = asyncio.create_task(self._watch_agent(on_agent_gone))
        logger.info(
            "avatar worker %r joined room %s as %s in %.2f s (dispatch %s)",
            self._agent_name,
            self._room.name,
            self.identity,
            time.monotonic() - started,
            self._attempts[0][0],
        )

    def track_playback(self, sink: AudioOutput) -> None:
        """Follow the avatar's playback reports, to tell how much of a reply was heard."""

        def started(_: object) -> None:
            self._playing_since = time.monotonic()

        def finished(_: object) -> None:
            self._playing_since = None

        sink.on("playback_started", started)
        sink.on("playback_finished", finished)

    def heard_position(self) -> float:
        """Seconds of the current segment the user has heard (the avatar plays in real time,
        up to its last heartbeat once it has gone silent)."""
        if self._playing_since is None:
            return 0.0
        end = time.monotonic() if self._silent_at is None else self._silent_at
        return max(0.0, end - self._playing_since)

    def lag(self) -> Lag | None:
        """How the avatar keeps up with the agent's speech, from its newest beat (``None``
        before one, or from a worker that does not say). Its starving time runs on while
        no newer beat says otherwise; its loss is the worse of the avatar's video's and
        the beats' own."""
        beat = self._beat
        if beat is None:
            return None
        now = time.monotonic()
        starving = beat.starving_s + (now - self._beat_at if beat.open and beat.starving_s > 0 else 0.0)
        return Lag(
            ready=beat.ready, begun=beat.begun, open=beat.open, received_s=beat.received_s,
            heard_s=beat.heard_s, starving_s=starving,
            uplink_loss=max(beat.uplink_loss, self._beat_loss(now)),
        )  # fmt: skip

    def _beat_loss(self, now: float) -> float:
        """The share of beats missing between the window's first and last: a beat that is
        late (a busy avatar or agent) is not lost, and counts once it arrives."""
        while self._beats and now - self._beats[0][0] > _BEAT_LOSS_WINDOW_S:
            self._beats.popleft()
        if len(self._beats) < 2:
            return 0.0
        seqs = {seq for _, seq in self._beats}
        return max(0.0, 1.0 - len(seqs) / (max(seqs) - min(seqs) + 1))

    def connected(self) -> bool:
        """The agent's room is up. (Beats held up for a while on a lossy link are not an
        outage; an avatar that stays silent is dead, see ``_watch_agent``.)"""
        return self._room.connection_state == rtc.ConnectionState.CONN_CONNECTED

    def gave_up(self) -> tuple[int, float] | None:
        """(mark, seconds heard) of the last reply the avatar gave up, by itself or asked:
        the later of what its beats and its attribute say."""
        said = [w.gave_up for w in (self._beat, self._said) if w is not None and w.gave_up is not None]
        return max(said, default=None)

    async def give_up(self, mark: int) -> float | None:
        """Ask the avatar to give the reply it was sent after ``mark`` segments up
        (``AvatarPublisher.give_up``); returns its answer, the seconds heard, or ``None``
        if it had finished that reply. Waits as long as the avatar is alive: a request
        that gets through late is acted on, so its answer must not be missed."""
        request = GiveUp(id=self._give_ups, mark=mark)
        self._give_ups += 1
        answer = asyncio.get_running_loop().create_future()
        self._answers[request.id] = (mark, answer)
        payload = request.model_dump_json()
        by_server = asyncio.create_task(self._ask_through_server(payload))
        try:
            while not answer.done() and not self._closed and self._last_beat is not None:
                with contextlib.suppress(Exception):  # lost like any lossy packet: sent again
                    await self._room.local_participant.publish_data(
                        payload.encode(), reliable=False, destination_identities=[self.identity],
                        topic=GIVE_UP_TOPIC,
                    )  # fmt: skip
                await asyncio.wait({answer}, timeout=_GIVE_UP_RESEND_S)
        finally:
            del self._answers[request.id]
            by_server.cancel()
        return answer.result() if answer.done() else None  # gone silent: the fail-over moves it

    async def _ask_through_server(self, payload: str) -> None:
        try:
            async with self._api() as lk:
                await set_avatar_attribute(lk, self._room.name, self.identity, GIVE_UP_ATTRIBUTE, payload)
        except Exception as exc:  # noqa: BLE001 - the lossy packets still ask
            logger.debug("asking avatar %s through the server: %r", self.identity, exc)

    async def _dispatch(self, identity: str) -> None:
        request = self._request.model_copy(update={"avatar_identity": identity})
        async with self._api() as lk:
            try:
                dispatch = await lk.agent_dispatch.create_dispatch(
                    api.CreateAgentDispatchRequest(
                        agent_name=self._agent_name,
                        room=self._room.name,
                        metadata=request.model_dump_json(),
                    )
                )
            except Exception as exc:
                raise AvatarDispatchError(
                    f"LiveKit at {self._credentials[0]} refused to dispatch avatar worker "
                    f"{self._agent_name!r}: {exc!r}"
                ) from exc
        self._attempts.append((dispatch.id, identity))

    async def _has_job(self, dispatch_id: str) -> bool:
        """Whether a worker took this dispatch (when unsure, assume it did)."""
        try:
            async with self._api() as lk:
                dispatch = await asyncio.wait_for(
                    lk.agent_dispatch.get_dispatch(dispatch_id, self._room.name), _API_TIMEOUT_S
                )
        except Exception as exc:  # noqa: BLE001 - unknown: wait rather than ask twice
            logger.debug("reading dispatch %s: %r", dispatch_id, exc)
            return True
        return dispatch is not None and bool(dispatch.state.jobs)

    def _arrived(self) -> str | None:
        """The identity of an avatar that has joined and published video, if any."""
        for _, identity in self._attempts:
            p = self._room.remote_participants.get(identity)
            if p and any(t.kind == rtc.TrackKind.KIND_VIDEO for t in p.track_publications.values()):
                return identity
        return None

    async def _watch_agent(self, on_agent_gone: Callable[[], None]) -> None:
        # Polled: the room's "disconnected" event is not always emitted.
        while (state := self._room.connection_state) != rtc.ConnectionState.CONN_DISCONNECTED:
            await asyncio.sleep(_POLL_S)
            now = time.monotonic()
            if self._last_beat is None:
                continue  # already reported silent
            if state != rtc.ConnectionState.CONN_CONNECTED:
                self._last_beat = now + _RECONNECT_GRACE_S  # nothing can arrive now
                continue
            lossy = now - self._lossy_at < _LOSSY_FOR_S
            limit = _SILENT_ON_LOSSY_LINK_S if lossy else HEARTBEAT_SILENT_S
            if now - self._last_beat > limit and not self._closed and self._on_left:
                self._silent_at, self._last_beat = self._last_beat, None
                self._on_left(f"avatar {self.identity} silent for {limit:g} s (its worker died?)")
        if not self._closed:
            on_agent_gone()

    def _heard(self, packet: rtc.DataPacket) -> None:
        sender = packet.participant
        if packet.topic != HEARTBEAT_TOPIC or sender is None or sender.identity != self.identity:
            return
        now = time.monotonic()
        self._last_beat = max(now, self._last_beat or 0.0)
        try:
            beat = Beat.model_validate_json(packet.data)
        except ValueError:
            return  # a worker that only says it is alive
        self._take_beat(beat, now)

    def _avatar_said(self, changed: dict[str, str], participant: rtc.Participant) -> None:
        """The avatar's word through the server: alive (on a lossy link, whatever the
        beats), and what it gave up."""
        if participant.identity != self.identity:
            return
        if ALIVE_ATTRIBUTE in changed and self._last_beat is not None:
            self._last_beat = max(time.monotonic(), self._last_beat)
        if GAVE_UP_ATTRIBUTE in changed:
            try:
                self._said = GaveUp.model_validate_json(changed[GAVE_UP_ATTRIBUTE])
            except ValueError:
                return
            self._settle(self._said)

    def _take_beat(self, beat: Beat, now: float) -> None:
        if self._beat is None or beat.seq > self._beat.seq:
            self._beat, self._beat_at = beat, now
        self._beats.append((now, beat.seq))
        if self._beat_loss(now) >= _LOSSY_BEATS:
            self._lossy_at = now
        self._settle(beat)
        for held in self._held:
            held[3] += 1
        self._judge()

    def judge_report(self, position: float, interrupted: bool, deliver: Callable[[], object]) -> None:
        """Pass a ``playback_finished`` report on once a beat vouches for it.

        LiveKit's receiver retries a report whose answer was lost, though the first try
        may have arrived, and the agent would take the repeat for the next reply's end.
        The beats say how many reports the avatar sent and what the last few said: the
        report the agent expects next is taken if the beats say that one said the same,
        and is a repeat if they say it said something else, or never count it. From a
        worker that does not say, every report is taken.
        """
        if self._beat is None or self._beat.reports is None:
            self._reports_taken += 1
            deliver()
            return
        self._held.append([position, interrupted, deliver, 0])
        self._judge()

    def _judge(self) -> None:
        beat = self._beat
        while self._held and beat is not None and beat.reports is not None:
            position, interrupted, deliver, waited = self._held[0]
            ordinal = self._reports_taken + 1
            if beat.reports < ordinal:  # not counted yet: the beat saying so may be on its way
                if waited < _REPORT_WAIT_BEATS:
                    return
                vouched = False
            else:
                index = ordinal - (beat.reports - len(beat.recent_reports)) - 1
                said = beat.recent_reports[index] if index >= 0 else None
                # Older than the beats remember (many reports in flight): taken.
                vouched = said is None or (abs(said[0] - position) < 1e-6 and said[1] == interrupted)
            self._held.pop(0)
            if vouched:
                self._reports_taken += 1
                deliver()
            else:
                logger.warning("dropped a playback report the avatar sent once and the link delivered twice")

    def _settle(self, word: Beat | GaveUp) -> None:
        """Answer the give-up requests that ``word`` (a beat, or the attribute) answers."""
        for request_id, (mark, answer) in self._answers.items():
            if answer.done():
                continue
            if request_id == word.answered:
                answer.set_result(word.answer)
            elif word.gave_up is not None and word.gave_up[0] == mark:
                answer.set_result(word.gave_up[1])  # it gave that reply up by itself

    def _participant_left(self, participant: rtc.RemoteParticipant) -> None:
        if participant.identity == self.identity and not self._closed and self._on_left:
            if self._silent_at is None and self._last_beat is not None:
                self._silent_at = min(self._last_beat, time.monotonic())
            self._on_left(f"avatar worker participant {self.identity} left the room")

    def _api(self) -> api.LiveKitAPI:
        url, key, secret = self._credentials
        return api.LiveKitAPI(url, key, secret)

    async def _withdraw(self, keep: str | None = None) -> None:
        """Delete the dispatches but ``keep``'s: LiveKit ends any job they started late."""
        dropped = [d for d, identity in self._attempts if identity != keep]
        self._attempts = [(d, identity) for d, identity in self._attempts if identity == keep]
        for dispatch_id in dropped:
            with contextlib.suppress(Exception):
                async with self._api() as lk:
                    await asyncio.wait_for(
                        lk.agent_dispatch.delete_dispatch(dispatch_id, self._room.name),
                        _API_TIMEOUT_S,
                    )

    async def aclose(self) -> None:
        """Remove the avatar from the room now (it also leaves by itself when the agent does)."""
        if self._closed:
            return
        self._closed = True
        self._room.off("participant_disconnected", self._participant_left)
        self._room.off("data_received", self._heard)
        self._room.off("participant_attributes_changed", self._avatar_said)
        if self._watch is not None and self._watch is not asyncio.current_task():
            self._watch.cancel()
        if self.identity in self._room.remote_participants or not self._room.isconnected():
            await self._end_avatar()
        await self._withdraw()

    async def _end_avatar(self) -> None:
        """Ask a live avatar to leave by itself (see ``LEAVE_ATTRIBUTE``); remove it
        through the server if it has not left in time, or at once if it is silent."""
        try:
            async with self._api() as lk:
                if self._last_beat is not None:
                    await asyncio.wait_for(
                        set_avatar_attribute(lk, self._room.name, self.identity, LEAVE_ATTRIBUTE, "1"),
                        _API_TIMEOUT_S,
                    )
                    asked_at = time.monotonic()
                    while time.monotonic() < asked_at + LEAVE_WAIT_S:
                        await asyncio.sleep(_POLL_S)
                        with contextlib.suppress(Exception):  # asked again at the next poll
                            if not await asyncio.wait_for(
                                server_lists(lk, self._room.name, self.identity), _API_TIMEOUT_S
                            ):
                                logger.debug("avatar %s left %.2f s after it was asked",
                                             self.identity, time.monotonic() - asked_at)  # fmt: skip
                                return
                    logger.info("avatar %s did not leave when asked; removing it", self.identity)
                who = api.RoomParticipantIdentity(room=self._room.name, identity=self.identity)
                await asyncio.wait_for(lk.room.remove_participant(who), _API_TIMEOUT_S)
        except Exception as exc:  # noqa: BLE001 - it may already be gone
            logger.debug("ending avatar %s: %r", self.identity, exc)
