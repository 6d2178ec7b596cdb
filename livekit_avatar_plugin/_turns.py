"""Turn control: how the session opens, and which turns the user cannot barge into.

LiveKit already lets a single speech refuse interruptions. What it does not do is hold a
*turn* (a tool's execution and the reply that voices its result) or an app's multi-step
flow, release that hold reliably when the turn ends without speech, or decide what happens
to what the user said in the meantime. ``TurnController`` does, with public AgentSession
hooks only:

* while anything is protected, every speech that is playing or gets created refuses
  interruptions (so VAD barge-in cannot cut it and LiveKit will not answer over it);
* while a tool runs there is no speech playing, so the user's turn would be answered in
  parallel: the agent's ``on_user_turn_completed`` hook is wrapped to stop that reply;
* what the user says while protected is dropped (``discard``) or answered right after the
  last protection is released (``defer``), never both and never twice;
* every hold ends when its turn ends (speech done, no speech, error, cancellation), when
  the session closes, or after ``max_hold_s``, whichever comes first.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from livekit.agents import StopResponse
from livekit.agents.types import NOT_GIVEN

from ._config import AvatarSessionOptions
from ._protection import (
    Protection,
    ProtectionKind,
    ProtectionReleasedEvent,
    ProtectionStartedEvent,
    ReleaseCause,
    _Hold,
)

if TYPE_CHECKING:
    from livekit.agents import AgentSession
    from livekit.agents.voice import SpeechHandle
    from livekit.agents.voice.room_io import TextInputEvent

logger = logging.getLogger("livekit_avatar_plugin.turns")

_GATE_ATTR = "_livekit_avatar_turn_gate"
# A user turn heard during protection is committed by LiveKit up to an endpointing delay
# later; for this long after the release it is recognised as already handled.
_LATE_TURN_S = 5.0
# Speech the agent starts this soon after the avatar starts is its opening line.
_OPENING_S = 3.0


class TurnController:
    """Applies ``first_message``, ``tool_protection`` and ``input_during_protection``."""

    def __init__(
        self,
        agent_session: AgentSession,
        options: AvatarSessionOptions,
        emit: Callable[..., None],
    ) -> None:
        self._session = agent_session
        self._opts = options
        self._emit = emit
        self._holds: dict[object, _Hold] = {}
        self._guarded: dict[SpeechHandle, bool] = {}  # handle -> its own allow_interruptions
        self._own_speech: set[SpeechHandle] = set()
        self._making_own = False
        self._preemptive_was: bool | None = None
        self._heard_while_protected: list[str] = []
        self._answered_late: list[tuple[str, float]] = []
        self._user_has_spoken = False
        self._greeting_task: asyncio.Task[None] | None = None
        self._closed = False
        self._handlers: list[tuple[Any, Callable[[Any], None]]] = []  # (event name, handler)
        self._attached_at = time.monotonic()

    # -- public -------------------------------------------------------------------------

    @property
    def protected(self) -> bool:
        return bool(self._holds)

    def protect(self, reason: str) -> Protection:
        return Protection(self, reason)

    def own_speech(self, make: Callable[[], SpeechHandle]) -> SpeechHandle:
        """Create a speech of the plugin's own (greeting, goodbye): exempt from the rule
        that a disabled first message keeps the agent quiet until the user speaks."""
        self._making_own = True
        try:
            handle = make()
        finally:
            self._making_own = False
        self._own_speech.add(handle)
        return handle

    async def text_input(self, session: AgentSession, ev: TextInputEvent) -> None:
        """A ``text_input_cb`` that gives typed messages the same rules as spoken ones."""
        self._user_has_spoken = True
        if self.protected:
            self._note_user_input(ev.text)
            return
        if (speech := session.current_speech) is not None and speech.allow_interruptions:
            await session.interrupt()
        session.generate_reply(user_input=ev.text)

    # -- wiring -------------------------------------------------------------------------

    def attach(self, wait_avatar: Callable[[], Awaitable[None]]) -> None:
        s = self._session
        self._attached_at = time.monotonic()
        self._handlers = [
            ("speech_created", self._on_speech_created),
            ("tool_execution_updated", self._on_tool_update),
            ("function_tools_executed", self._on_tools_executed),
            ("user_input_transcribed", self._on_transcribed),
            ("user_state_changed", self._on_user_state),
            ("agent_state_changed", self._on_agent_state),
            ("close", self._on_close),
        ]
        for name, handler in self._handlers:
            s.on(name, handler)
        if self._opts.input_during_protection == "defer":
            # LiveKit feeds silence to STT during speech that cannot be interrupted (against
            # echo); deferring needs the words. Browsers cancel the avatar's echo themselves.
            interruption = s.options.turn_handling["interruption"]
            if interruption.get("discard_audio_if_uninterruptible", True):
                interruption["discard_audio_if_uninterruptible"] = False
                logger.info(
                    "discard_audio_if_uninterruptible turned off: input_during_protection="
                    "'defer' transcribes what the user says during protected speech"
                )
        if self._opts.first_message.enabled:
            self._greeting_task = asyncio.create_task(
                self._open(wait_avatar), name="avatar-first-message"
            )

    async def aclose(self) -> None:
        """Release every hold (cause ``closed``), stop listening to the session, and wait
        for the first message's task to end."""
        self._detach()
        task = self._greeting_task
        if task is not None and task is not asyncio.current_task():
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    def _detach(self) -> None:
        if self._closed:
            return
        self._closed = True
        for name, handler in self._handlers:
            try:
                self._session.off(name, handler)
            except Exception:  # noqa: BLE001 - already detached by the session's close
                pass
        if self._greeting_task is not None:
            self._greeting_task.cancel()
        for key in list(self._holds):
            self._release(key, "closed")

    # -- first message ------------------------------------------------------------------

    async def _open(self, wait_avatar: Callable[[], Awaitable[None]]) -> None:
        # Protection starts only once the face is on screen, so the user is never muted
        # while the avatar is still joining.
        await wait_avatar()
        while self._session.agent_state == "initializing":
            await asyncio.sleep(0.02)
        if self._user_has_spoken or self._closed:
            return
        first = self._opts.first_message
        speech = self._session.current_speech
        if speech is None or speech.done():
            if first.text is not None:
                text = first.text
                speech = self.own_speech(
                    lambda: self._session.say(text, allow_interruptions=first.interruptible)
                )
            else:
                speech = self.own_speech(
                    lambda: self._session.generate_reply(
                        instructions=first.instructions or NOT_GIVEN,
                        allow_interruptions=first.interruptible,
                    )
                )
        else:
            logger.info("first message: the agent's own opening speech is the greeting")
        if not first.interruptible and not speech.done() and not speech.interrupted:
            self._acquire("greeting", "first message", speech=speech)

    # -- session events -----------------------------------------------------------------

    def _on_speech_created(self, ev: Any) -> None:
        handle = ev.speech_handle
        if (
            not self._opts.first_message.enabled
            and not self._user_has_spoken
            and not self._making_own
            and time.monotonic() - self._attached_at < _OPENING_S
        ):
            # The app may speak first on purpose later; an opening speech is most likely an
            # on_enter greeting that contradicts the configuration. Say so, do not censor.
            logger.warning(
                "first_message is disabled, but the agent started speaking before the user "
                "did (a greeting in on_enter?); remove it, or enable first_message"
            )
        if self.protected:
            self._guard(handle)

    def _on_tool_update(self, ev: Any) -> None:
        update = ev.update
        if update.type == "tool_call_started":
            call = update.function_call
            if not self._opts.tool_protection.covers(call.name):
                return
            speech = self._session.current_speech
            self._acquire("tool", f"tool {call.name}", key=call.call_id, speech=speech)
        elif update.type == "tool_call_ended":
            hold = self._holds.get(update.call_id)
            if hold is None:
                return
            hold.tool_status = update.status
            if hold.speech is None or hold.speech.done():
                self._release(update.call_id, _tool_cause(hold, spoke=False))

    def _on_tools_executed(self, ev: Any) -> None:
        # A tool that returns nothing produces no reply; its speech handle is finishing.
        # Release from here too in case the handle is not the one the tool ran under.
        for call in ev.function_calls:
            hold = self._holds.get(call.call_id)
            if hold is None:
                continue
            hold.tool_reply = ev.has_tool_reply
            if not ev.has_tool_reply and hold.tool_status is not None:
                self._release(call.call_id, _tool_cause(hold, spoke=False))

    def _on_transcribed(self, ev: Any) -> None:
        if not ev.is_final or not ev.transcript.strip():
            return
        self._user_has_spoken = True
        if self.protected:
            self._note_user_input(ev.transcript)

    def _on_user_state(self, ev: Any) -> None:
        if ev.new_state == "speaking":
            self._user_has_spoken = True

    def _on_agent_state(self, ev: Any) -> None:
        # The agent may change (handoff); make sure whichever agent runs is gated.
        if ev.new_state != "initializing":
            self._install_gate()

    def _on_close(self, _ev: Any) -> None:
        self._detach()  # an event handler cannot wait; aclose() waits for the task later

    # -- holds --------------------------------------------------------------------------

    def _acquire(
        self,
        kind: ProtectionKind,
        reason: str,
        *,
        key: object | None = None,
        speech: SpeechHandle | None = None,
    ) -> object:
        key = key if key is not None else object()
        if not self._holds:
            self._pause_preemptive_generation()
        hold = _Hold(kind=kind, reason=reason, started=time.monotonic(), speech=speech)
        loop = asyncio.get_running_loop()
        hold.timer = loop.call_later(
            self._opts.tool_protection.max_hold_s, self._expire, key
        )
        self._holds[key] = hold
        self._install_gate()
        current = self._session.current_speech
        for handle in (speech, current):
            if handle is not None:
                self._guard(handle)
        if speech is not None:
            speech.add_done_callback(functools.partial(self._speech_done, key))
        logger.info("protection started: %s (%s)", kind, reason)
        self._emit("protection_started", ProtectionStartedEvent(kind=kind, reason=reason))
        return key

    def _speech_done(self, key: object, handle: SpeechHandle) -> None:
        hold = self._holds.get(key)
        if hold is None:
            return
        if hold.kind == "tool" and hold.tool_status is None:
            # The reply that called the tool ended, but the tool still runs: keep holding.
            return
        if hold.kind == "tool":
            cause = _tool_cause(hold, spoke=hold.tool_reply)
        else:
            cause = "interrupted" if handle.interrupted else "speech_done"
        self._release(key, cause)

    def _expire(self, key: object) -> None:
        hold = self._holds.get(key)
        if hold is not None:
            logger.warning(
                "protection of %s (%s) still held after max_hold_s=%.1f s; releasing it",
                hold.kind,
                hold.reason,
                self._opts.tool_protection.max_hold_s,
            )
            self._release(key, "max_hold")

    def _release(self, key: object, cause: ReleaseCause) -> None:
        hold = self._holds.pop(key, None)
        if hold is None:
            return
        if hold.timer is not None:
            hold.timer.cancel()
        held = time.monotonic() - hold.started
        if not self._holds:
            self._unguard_all()
            self._resume_preemptive_generation()
        logger.info("protection released: %s (%s) after %.2f s: %s", hold.kind, hold.reason, held, cause)
        self._emit(
            "protection_released",
            ProtectionReleasedEvent(kind=hold.kind, reason=hold.reason, cause=cause, held_s=held),
        )
        if not self._holds:
            self._answer_deferred()

    def _guard(self, handle: SpeechHandle) -> None:
        if handle.done() or handle.interrupted or handle in self._guarded:
            return
        self._guarded[handle] = handle.allow_interruptions
        handle.allow_interruptions = False

    def _unguard_all(self) -> None:
        guarded, self._guarded = self._guarded, {}
        for handle, allowed in guarded.items():
            if allowed and not handle.done() and not handle.interrupted:
                handle.allow_interruptions = True

    def _pause_preemptive_generation(self) -> None:
        # A reply drafted from words said while protected would be thrown away (or, with
        # a scripted or paid LLM, cost a call): draft nothing until the release.
        opts = self._session.options.preemptive_generation
        self._preemptive_was = opts.get("enabled", True)
        opts["enabled"] = False

    def _resume_preemptive_generation(self) -> None:
        if self._preemptive_was is not None:
            self._session.options.preemptive_generation["enabled"] = self._preemptive_was
            self._preemptive_was = None

    # -- what the user said while protected ----------------------------------------------

    def _note_user_input(self, text: str) -> None:
        self._heard_while_protected.append(text)
        if self._opts.input_during_protection == "discard":
            logger.info("user input while protected, discarded (input_during_protection='discard')")
        else:
            logger.info("user input while protected, deferred until the protected turn ends")

    def _answer_deferred(self) -> None:
        heard, self._heard_while_protected = self._heard_while_protected, []
        # The turn LiveKit commits for these words may land after the release: it must
        # not be answered again (defer) or at all (discard).
        deadline = time.monotonic() + _LATE_TURN_S
        self._answered_late = [(t, d) for t, d in self._answered_late if d > time.monotonic()]
        self._answered_late.extend((text, deadline) for text in heard)
        if self._opts.input_during_protection != "defer" or not heard or self._closed:
            return
        self._session.generate_reply(user_input=" ".join(heard))

    def _take_late_turn(self, text: str) -> bool:
        now = time.monotonic()
        for i, (heard, deadline) in enumerate(self._answered_late):
            if deadline > now and heard == text:
                del self._answered_late[i]
                return True
        return False

    def _install_gate(self) -> None:
        try:
            agent = self._session.current_agent
        except RuntimeError:
            return
        if getattr(agent, _GATE_ATTR, None) is self:
            return
        original = agent.on_user_turn_completed
        controller = self

        async def gated(turn_ctx: Any, new_message: Any) -> None:
            text = (new_message.text_content or "").strip()
            if controller.protected:
                # A tool is running (no speech playing), so LiveKit would answer now.
                if text and text not in controller._heard_while_protected:
                    controller._note_user_input(text)
                raise StopResponse()
            if text and controller._take_late_turn(text):
                raise StopResponse()
            await original(turn_ctx, new_message)

        agent.on_user_turn_completed = gated  # type: ignore[method-assign]
        setattr(agent, _GATE_ATTR, self)


def _tool_cause(hold: _Hold, *, spoke: bool) -> ReleaseCause:
    """How a protected tool turn ended. The tool's own end wins (error, cancelled); then an
    interruption of its speech (the app's force interrupt, whichever of the tool's end and
    the speech's end LiveKit reports first); then whether a reply was spoken."""
    if hold.tool_status in ("error", "cancelled"):
        return hold.tool_status  # type: ignore[return-value]
    if hold.speech is not None and hold.speech.interrupted:
        return "interrupted"
    return "speech_done" if spoke else "no_speech"


def disable_false_interruption_resume(agent_session: AgentSession) -> None:
    """An avatar cannot pause, so a "false" interruption can never be resumed.

    LiveKit would ignore the option with a warning on every session; turn it off once,
    visibly, so the session's behaviour matches its configuration.
    """
    interruption = agent_session.options.turn_handling["interruption"]
    if interruption.get("resume_false_interruption"):
        interruption["resume_false_interruption"] = False
        logger.info(
            "resume_false_interruption turned off: an avatar cannot pause its speech"
        )
