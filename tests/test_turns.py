"""Turn control end to end: first message, protected greeting, protected tool turns.

Every scenario runs in a real room on the real server: a scripted agent (fake LLM, signal
TTS), the avatar (test-pattern face: mouth = frame flash on each audio click, speaking =
mid grey, idle/listening = dark) and a user whose voice reaches LiveKit's own turn
detection through scripted VAD/STT events. Times come from one clock (time.monotonic).
"""

from __future__ import annotations

import asyncio
import logging
import time

import pytest
from livekit.agents import Agent, function_tool

from livekit_avatar_plugin import AvatarSession, AvatarSessionError
from livekit_avatar_plugin._turns import ProtectionReleasedEvent, ProtectionStartedEvent

from .av_harness import CLICK_THRESHOLD, FLASH_THRESHOLD, SenderLog
from .fake_realtime import FakeRealtimeModel
from .fakes import ScriptedLLM, ToolCall, click_times
from .pattern_pipeline import IDLE_LEVEL, SPEAKING_LEVEL
from .rooms import agent_room, wait_until
from .scripted_user import ScriptedUser

IDLE_THRESHOLD = (IDLE_LEVEL + SPEAKING_LEVEL) / 2
RELEASE_WITHIN_S = 0.05
# The product target is 250 ms (measured and printed here, and by benchmarks/av_sync.py);
# the test fails only when the avatar clearly kept going, so a loaded CI box cannot flake.
STOPPED_WITHIN_S = 0.6


class TurnLog:
    """What happened, when: protection events, speeches, tool events and published frames."""

    def __init__(self) -> None:
        self.protection: list[tuple[float, str, object]] = []
        self.speeches: list[tuple[float, object]] = []
        self.tool_events: list[tuple[float, object]] = []
        self.states: list[tuple[float, str]] = []
        self.sender = SenderLog()
        self.done_at: dict[int, float] = {}
        self.interrupted_at: dict[int, float] = {}
        self.on_screen_at_start: list[bool] = []

    def attach(self, session, avatar: AvatarSession) -> None:
        def started(ev) -> None:
            self.protection.append((time.monotonic(), "started", ev))
            publisher = avatar._transport.publisher
            self.on_screen_at_start.append(publisher is not None and publisher.video_publication is not None)

        avatar.on("protection_started", started)
        avatar.on("protection_released", lambda ev: self.protection.append((time.monotonic(), "released", ev)))
        avatar._publish_taps.append(self.sender.tap)
        session.on("speech_created", self._speech)
        session.on("tool_execution_updated", lambda ev: self.tool_events.append((time.monotonic(), ev.update)))
        session.on("agent_state_changed", lambda ev: self.states.append((time.monotonic(), ev.new_state)))

    def _speech(self, ev) -> None:
        handle = ev.speech_handle
        self.speeches.append((time.monotonic(), handle))
        handle.add_done_callback(lambda h: self.done_at.setdefault(id(h), time.monotonic()))

        async def watch_interrupt() -> None:
            while not handle.done() and not handle.interrupted:
                await asyncio.sleep(0.005)
            if handle.interrupted:
                self.interrupted_at[id(handle)] = time.monotonic()

        asyncio.ensure_future(watch_interrupt())

    def released(self) -> list[tuple[float, ProtectionReleasedEvent]]:
        return [(t, ev) for t, kind, ev in self.protection if kind == "released"]

    def started(self) -> list[tuple[float, ProtectionStartedEvent]]:
        return [(t, ev) for t, kind, ev in self.protection if kind == "started"]

    def flashes(self, after: float = 0.0, before: float = float("inf")) -> list[float]:
        return [t for t, level in self.sender.video if level > FLASH_THRESHOLD and after <= t <= before]

    def published_clicks(self, after: float, before: float = float("inf")) -> list[float]:
        """Click onsets in the audio the avatar played out (its publish tap)."""
        onsets: list[float] = []
        for t, peak in self.sender.audio:
            if not after <= t <= before or peak <= CLICK_THRESHOLD:
                continue
            if not onsets or t - onsets[-1] > 0.06:
                onsets.append(t)
        return onsets

    def video_levels(self, after: float, before: float) -> list[float]:
        return [level for t, level in self.sender.video if after <= t <= before]

    def tool_ended(self) -> list[tuple[float, object]]:
        return [(t, u) for t, u in self.tool_events if u.type == "tool_call_ended"]


def report_release(what: str, delay_s: float) -> None:
    print(f"protection released {1000 * delay_s:.1f} ms after {what}")
    assert delay_s <= RELEASE_WITHIN_S


def clicks_in(onsets: list[float], after: float, before: float = float("inf")) -> list[float]:
    return [t for t in onsets if after <= t <= before]


# -- first message ------------------------------------------------------------------------


async def test_first_message_disabled_waits_for_the_user(livekit_server) -> None:
    user = ScriptedUser()
    log = TurnLog()
    async with agent_room(
        livekit_server,
        "fm-off",
        observe=log.attach,
        user=user,
        replies=["clicks 1"],
        first_message={"enabled": False},
    ) as r:
        avatar_id = r.avatar.avatar_identity
        await r.watcher.wait_video(avatar_id)
        await asyncio.sleep(2.0)
        quiet_until = time.monotonic()
        assert not log.speeches, "the agent spoke before the user did"
        assert r.watcher.click_onsets(avatar_id) == []
        levels = log.video_levels(0.0, quiet_until)
        assert len(levels) > 25 and max(levels) < IDLE_THRESHOLD, "the mouth moved with no speech"

        await user.speak("hello", seconds=0.6)
        await wait_until(lambda: len(r.watcher.click_onsets(avatar_id)) >= 3, 10.0, "the answer")
        assert r.session.llm.calls == 1
        assert log.flashes(after=quiet_until), "the mouth did not move with the answer"


@pytest.mark.parametrize("source", ["text", "instructions"])
async def test_first_message_greets_once_the_avatar_is_on_screen(livekit_server, source) -> None:
    first = {"text": "clicks 1"} if source == "text" else {"instructions": "greet the user"}
    log = TurnLog()
    async with agent_room(
        livekit_server, "fm-on", observe=log.attach, replies=["clicks 1"], first_message=first
    ) as r:
        # The greeting starts as soon as the face is up, which can be before this test's
        # user has subscribed to the avatar's audio: its playout is what is checked.
        await wait_until(lambda: len(log.speeches) >= 1, 10.0, "the greeting")
        await asyncio.wait_for(log.speeches[0][1].wait_for_playout(), 15.0)
        assert len(log.speeches) == 1
        assert r.session.llm.calls == (1 if source == "instructions" else 0)
        if source == "instructions":
            assert "greet the user" in r.session.llm.prompts[0]


@pytest.mark.parametrize("mode", ["participant", "in_process"])
async def test_interruptible_greeting_stops_when_the_user_speaks(livekit_server, mode) -> None:
    user = ScriptedUser()
    log = TurnLog()
    async with agent_room(
        livekit_server,
        "fm-int",
        observe=log.attach,
        user=user,
        mode=mode,
        replies=["clicks 1"],
        first_message={"text": "clicks 6", "interruptible": True},
    ) as r:
        avatar_id = r.avatar.avatar_identity
        await wait_until(lambda: len(r.watcher.click_onsets(avatar_id)) >= 2, 10.0, "the greeting")
        greeting = log.speeches[0][1]
        speak = asyncio.create_task(user.speak("wait a moment", seconds=1.2))
        await wait_until(lambda: id(greeting) in log.interrupted_at, 5.0, "the interruption")
        t_int = log.interrupted_at[id(greeting)]
        await speak
        await wait_until(lambda: r.session.llm.calls >= 1, 5.0, "the reply to the user")
        assert_avatar_stopped(log, r, t_int)
        assert not log.protection, "an interruptible greeting must not take protection"


def assert_avatar_stopped(log: TurnLog, r, t_int: float) -> None:
    """Nothing of the interrupted speech 250 ms after the interruption was decided: not at
    the listener, not on the face; and the face is in its listening pose."""
    reply_speaking = [t for t, s in log.states if s == "speaking" and t > t_int]
    reply_from = reply_speaking[0] if reply_speaking else time.monotonic()
    onsets = r.watcher.click_onsets(r.avatar.avatar_identity)
    last_click = max(clicks_in(onsets, t_int, reply_from), default=t_int)
    last_flash = max(log.flashes(t_int, reply_from), default=t_int)
    print(
        f"interruption -> last audio click at the listener {1000 * (last_click - t_int):.0f} ms, "
        f"last mouth flash sent {1000 * (last_flash - t_int):.0f} ms"
    )
    late_clicks = clicks_in(onsets, t_int + STOPPED_WITHIN_S, reply_from)
    assert late_clicks == [], f"audio {[round(t - t_int, 3) for t in late_clicks]} s after"
    assert log.flashes(t_int + STOPPED_WITHIN_S, reply_from) == []
    pose = log.video_levels(t_int + STOPPED_WITHIN_S, min(reply_from, t_int + 0.9))
    assert pose and max(pose) < IDLE_THRESHOLD


@pytest.mark.parametrize("mode", ["participant", "in_process"])
async def test_realtime_model_barge_in_stops_the_avatar(livekit_server, mode) -> None:
    model = FakeRealtimeModel(["clicks 6", "clicks 1"])
    log = TurnLog()
    async with agent_room(
        livekit_server,
        "rt",
        observe=log.attach,
        llm=model,
        mode=mode,
        first_message={"instructions": "greet the user"},
    ) as r:
        avatar_id = r.avatar.avatar_identity
        await wait_until(lambda: len(r.watcher.click_onsets(avatar_id)) >= 2, 10.0, "the greeting")
        greeting = log.speeches[0][1]
        says = asyncio.create_task(model.user_says("hold on", seconds=1.0))
        await wait_until(lambda: id(greeting) in log.interrupted_at, 5.0, "the interruption")
        t_int = log.interrupted_at[id(greeting)]
        await says
        assert model.sessions[-1].interrupts >= 1, "the model's own generation was not cancelled"
        assert_avatar_stopped(log, r, t_int)
        # The server-detected turn is answered, through the avatar.
        await wait_until(lambda: model.calls == 2 and len(log.speeches) == 2, 5.0, "the answer")
        await wait_until(
            lambda: clicks_in(r.watcher.click_onsets(avatar_id), t_int + 0.9), 5.0, "the answer's audio"
        )


@pytest.mark.parametrize("policy", ["discard", "defer"])
async def test_non_interruptible_greeting_plays_to_the_last_word(livekit_server, policy) -> None:
    user = ScriptedUser()
    log = TurnLog()
    async with agent_room(
        livekit_server,
        "fm-prot",
        observe=log.attach,
        user=user,
        replies=["clicks 1"],
        first_message={"text": "clicks 3", "interruptible": False},
        input_during_protection=policy,
    ) as r:
        avatar_id = r.avatar.avatar_identity
        await wait_until(lambda: log.started(), 10.0, "protection")
        assert log.on_screen_at_start == [True], "protection started before the avatar published"
        await wait_until(lambda: len(r.watcher.click_onsets(avatar_id)) >= 2, 10.0, "the greeting")
        await user.speak("what is this about", seconds=1.0)
        greeting = log.speeches[0][1]
        await wait_until(lambda: greeting.done(), 10.0, "the greeting to finish")
        await wait_until(lambda: log.released(), 2.0, "the release")
        assert not greeting.interrupted
        await asyncio.sleep(0.3)  # the last slice's trip to the listener
        # Every click went out, the mouth flashed with each, and the listener heard the last.
        expected = click_times(3)
        (t_rel, released), = log.released()
        played = log.published_clicks(log.speeches[0][0], t_rel)
        assert len(played) == len(expected), f"played {len(played)} of {len(expected)} clicks"
        assert len(log.flashes(after=log.speeches[0][0])) >= len(expected), "the mouth stopped"
        heard = clicks_in(r.watcher.click_onsets(avatar_id), played[-1] - 0.05)
        assert heard, "the listener did not hear the greeting's last word"

        (t_start, started), = log.started()
        assert (started.kind, released.kind, released.cause) == ("greeting", "greeting", "speech_done")
        report_release("the greeting ended", t_rel - log.done_at[id(greeting)])

        await asyncio.sleep(1.5)
        users_words = [m.text_content for m in r.session.history.messages() if m.role == "user"]
        if policy == "discard":
            assert r.session.llm.calls == 0, "a discarded turn was answered"
            assert users_words == []
        else:
            assert r.session.llm.calls == 1, "the deferred turn was not answered exactly once"
            assert r.session.llm.seen[0][-1] == "what is this about"
            assert users_words == ["what is this about"]
            assert len(log.speeches) == 2


# -- protected tool turns -----------------------------------------------------------------


class OrderAgent(Agent):
    """An agent whose one tool looks an order up; how it ends is chosen by the test."""

    def __init__(self, *, seconds: float = 1.5, outcome: str = "result") -> None:
        super().__init__(instructions="support")
        self.seconds = seconds
        self.outcome = outcome
        self.finished = asyncio.Event()
        self.cancelled = False

    @function_tool
    async def lookup_order(self) -> str | None:
        """Look up the user's order."""
        try:
            await asyncio.sleep(self.seconds)
        except asyncio.CancelledError:
            self.cancelled = True
            raise
        self.finished.set()
        if self.outcome == "error":
            raise RuntimeError("CRM unavailable")
        if self.outcome == "cancel":
            raise asyncio.CancelledError()  # e.g. the CRM client's request was cancelled
        if self.outcome == "nothing":
            return None
        return "order 42 shipped"


async def _tool_turn(livekit_server, *, outcome="result", seconds=1.5, protect=True, **opts):
    user = ScriptedUser()
    agent = OrderAgent(seconds=seconds, outcome=outcome)
    tools = {"enabled": protect, **opts.pop("tool_protection", {})}
    log = TurnLog()
    ctx = agent_room(
        livekit_server,
        "tool",
        observe=log.attach,
        user=user,
        agent=agent,
        llm=ScriptedLLM([ToolCall("lookup_order"), "clicks 2", "clicks 1"]),
        tool_protection=tools,
        **opts,
    )
    return user, agent, log, ctx


@pytest.mark.parametrize("outcome", ["result", "nothing", "error"])
async def test_protected_tool_turn_survives_barge_in_and_releases(livekit_server, outcome) -> None:
    user, agent, log, ctx = await _tool_turn(livekit_server, outcome=outcome)
    async with ctx as r:
        avatar_id = r.avatar.avatar_identity
        await r.watcher.wait_video(avatar_id)
        await user.speak("where is my order", seconds=0.6, trailing_silence=0.3)
        await wait_until(lambda: log.started(), 5.0, "tool protection")
        # Barge in while the tool runs.
        await user.speak("hello? are you there", seconds=0.8, trailing_silence=0.2)
        await wait_until(lambda: log.tool_ended(), 5.0, "the tool to end")
        assert not agent.cancelled, "the barge-in cancelled the protected tool"
        (t_end, ended), = log.tool_ended()
        assert ended.status == ("error" if outcome == "error" else "done")

        if outcome == "nothing":
            await wait_until(lambda: log.released(), 2.0, "the release")
            (t_rel, rel), = log.released()
            assert rel.cause == "no_speech"
            report_release("the tool returned nothing", t_rel - t_end)
        else:
            # The reply voicing the result (or the error): barge in on it too.
            await wait_until(
                lambda: len(clicks_in(r.watcher.click_onsets(avatar_id), t_end)) >= 1, 10.0, "the reply"
            )
            await user.speak("stop", seconds=0.8, trailing_silence=0.1)
            handle = log.speeches[-1][1]
            await wait_until(lambda: log.released(), 5.0, "the release")
            (t_rel, rel), = log.released()
            assert not handle.interrupted, "the protected reply was interrupted"
            assert rel.cause == ("error" if outcome == "error" else "speech_done")
            report_release(f"the reply ended ({outcome})", t_rel - log.done_at[id(handle)])
            played = log.published_clicks(t_end, t_rel)
            assert len(played) == len(click_times(2)), "the protected reply was cut short"
            assert clicks_in(r.watcher.click_onsets(avatar_id), played[-1] - 0.05), "last word lost"
        (_, started), = log.started()
        assert (started.kind, started.reason) == ("tool", "tool lookup_order")
        # Tool call + reply: the barge-ins were never answered (discard is the default).
        await asyncio.sleep(0.8)
        assert r.session.llm.calls == (1 if outcome == "nothing" else 2)
        assert not r.avatar.protected


async def test_max_hold_releases_a_stuck_tool_turn(livekit_server, caplog) -> None:
    user, agent, log, ctx = await _tool_turn(
        livekit_server, seconds=4.0, tool_protection={"max_hold_s": 1.0}
    )
    async with ctx as r:
        await r.watcher.wait_video(r.avatar.avatar_identity)
        with caplog.at_level(logging.WARNING, logger="livekit_avatar_plugin.turns"):
            await user.speak("where is my order", seconds=0.6, trailing_silence=0.3)
            await wait_until(lambda: log.released(), 5.0, "the safety release")
        (t_start, _), = log.started()
        (t_rel, rel), = log.released()
        assert rel.cause == "max_hold"
        print(f"max_hold_s=1.0 released after {t_rel - t_start:.3f} s")
        assert 0.95 <= t_rel - t_start <= 1.0 + RELEASE_WITHIN_S
        assert "max_hold_s" in caplog.text
        assert not r.avatar.protected


@pytest.mark.parametrize("how", ["tool_cancelled", "app_interrupts"])
async def test_cancelled_or_interrupted_tool_turn_releases(livekit_server, how) -> None:
    outcome = "cancel" if how == "tool_cancelled" else "result"
    user, agent, log, ctx = await _tool_turn(livekit_server, seconds=1.0, outcome=outcome)
    async with ctx as r:
        await r.watcher.wait_video(r.avatar.avatar_identity)
        await user.speak("where is my order", seconds=0.6, trailing_silence=0.3)
        await wait_until(lambda: log.started(), 5.0, "tool protection")
        handle = log.speeches[-1][1]
        if how == "app_interrupts":
            handle.interrupt(force=True)  # protection stops the user, not the app
        await wait_until(lambda: log.released(), 3.0, "the release")
        (t_rel, rel), = log.released()
        (t_end, ended), = log.tool_ended()
        if how == "tool_cancelled":
            assert (ended.status, rel.cause) == ("cancelled", "cancelled")
        else:
            # LiveKit lets a running tool finish; the turn ends without its reply.
            assert (ended.status, rel.cause) == ("done", "interrupted")
        await wait_until(lambda: handle.done(), 2.0, "the turn's end")
        report_release(how, t_rel - max(t_end, log.done_at[id(handle)]))
        assert not r.avatar.protected


async def test_unprotected_tools_behave_as_stock_livekit(livekit_server) -> None:
    # Protection is on, but only for another tool: lookup_order is interruptible.
    user, agent, log, ctx = await _tool_turn(
        livekit_server, seconds=0.3, tool_protection={"tools": ["transfer_call"]}
    )
    async with ctx as r:
        avatar_id = r.avatar.avatar_identity
        await r.watcher.wait_video(avatar_id)
        await user.speak("where is my order", seconds=0.6, trailing_silence=0.3)
        await wait_until(lambda: log.tool_ended(), 5.0, "the tool")
        (t_end, _), = log.tool_ended()
        await wait_until(
            lambda: clicks_in(r.watcher.click_onsets(avatar_id), t_end), 5.0, "the reply"
        )
        handle = log.speeches[-1][1]
        await user.speak("stop", seconds=0.8, trailing_silence=0.5)
        await wait_until(lambda: id(handle) in log.interrupted_at, 3.0, "the interruption")
        assert not log.protection


# -- the app's own flows ------------------------------------------------------------------


async def test_app_protection_shields_a_multi_step_flow(livekit_server) -> None:
    user = ScriptedUser()
    log = TurnLog()
    async with agent_room(
        livekit_server, "app", user=user, replies=["clicks 1"], observe=log.attach
    ) as r:
        avatar_id = r.avatar.avatar_identity
        await r.watcher.wait_video(avatar_id)

        @r.avatar.protect("booking")
        async def booking_flow() -> None:
            await r.session.say("clicks 1.5").wait_for_playout()
            await asyncio.sleep(0.5)  # e.g. writing the booking
            await r.session.say("clicks 1").wait_for_playout()

        flow = asyncio.create_task(booking_flow())
        await wait_until(lambda: clicks_in(r.watcher.click_onsets(avatar_id), 0), 5.0, "the flow")
        await user.speak("cancel that", seconds=0.8, trailing_silence=0.2)
        await flow
        (t_rel, rel), = log.released()
        assert (rel.kind, rel.reason, rel.cause) == ("app", "booking", "exit")
        assert not any(h.interrupted for _, h in log.speeches)
        assert r.session.llm.calls == 0  # the barge-in was discarded
        assert not r.avatar.protected
        # Afterwards the user is answered again.
        await user.speak("thanks", seconds=0.6)
        await wait_until(lambda: r.session.llm.calls == 1, 5.0, "the answer after the flow")


async def test_typed_messages_follow_the_same_protection_rules(livekit_server) -> None:
    log = TurnLog()
    async with agent_room(
        livekit_server,
        "typed",
        observe=log.attach,
        typed=True,
        replies=["clicks 1"],
        first_message={"text": "clicks 3", "interruptible": False},
        input_during_protection="defer",
    ) as r:
        me = r.watcher.room.local_participant.identity
        await wait_until(lambda: me in r.agent_room.remote_participants, 10.0, "the agent to see me")
        await wait_until(lambda: log.started(), 10.0, "the protected greeting")
        await r.watcher.room.local_participant.send_text("can I type?", topic="lk.chat")
        await asyncio.sleep(0.3)
        assert r.avatar.protected, "the message must arrive while the greeting is protected"
        assert r.session.llm.calls == 0, "a typed message interrupted the protected greeting"
        await wait_until(lambda: log.released(), 10.0, "the greeting's end")
        assert not log.speeches[0][1].interrupted
        await wait_until(lambda: r.session.llm.calls == 1, 5.0, "the deferred answer")
        assert r.session.llm.seen[0] == ["can I type?"]
        # Unprotected, a typed message is answered at once.
        await wait_until(lambda: log.speeches[-1][1].done(), 5.0, "the answer to finish")
        await r.watcher.room.local_participant.send_text("and now?", topic="lk.chat")
        await wait_until(lambda: r.session.llm.calls == 2, 5.0, "the direct answer")
        assert r.session.llm.seen[1][-1] == "and now?"


def test_turn_options_are_validated_and_default_to_the_product_documents() -> None:
    opts = AvatarSession().options
    assert opts.first_message.enabled and opts.first_message.interruptible
    assert not opts.tool_protection.enabled and opts.tool_protection.max_hold_s == 30.0
    assert opts.input_during_protection == "discard"
    with pytest.raises(ValueError, match="either text or instructions"):
        AvatarSession(first_message={"text": "hi", "instructions": "greet"})
    with pytest.raises(ValueError, match="input_during_protection"):
        AvatarSession(input_during_protection="queue")
    with pytest.raises(ValueError, match="max_hold_s"):
        AvatarSession(tool_protection={"enabled": True, "max_hold_s": 0})
    covered = AvatarSession(tool_protection={"enabled": True, "tools": ["crm"]}).options
    assert covered.tool_protection.covers("crm") and not covered.tool_protection.covers("weather")
    with pytest.raises(AvatarSessionError, match="before avatar.protect"):
        AvatarSession().protect("booking")
