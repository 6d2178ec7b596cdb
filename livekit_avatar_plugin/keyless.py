"""Keyless stand-ins so an agent with this avatar runs with no cloud account.

``LocalTTS`` speaks with the local TTS (piper's joe voice when installed, else espeak-ng);
``EchoAssistant`` is a tiny scripted "LLM" that greets, answers each typed message by
repeating it, and looks orders up through ``OrderDesk``'s slow tool. They make the example agent and the demo work offline; replace them with
real models for an actual assistant.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass

import numpy as np
from typing import Any

from livekit.agents import Agent, function_tool, llm, tts
from livekit.agents.types import DEFAULT_API_CONNECT_OPTIONS, NOT_GIVEN, APIConnectOptions

from ._audio.local_tts import synthesize


class PcmTTS(tts.TTS):
    """A non-streaming mono TTS whose speech is whatever ``pcm_for(text)`` returns (int16
    samples and their rate), computed off the event loop."""

    def __init__(self, *, sample_rate: int) -> None:
        super().__init__(
            capabilities=tts.TTSCapabilities(streaming=False),
            sample_rate=sample_rate,
            num_channels=1,
        )

    def pcm_for(self, text: str) -> tuple[np.ndarray, int]:
        raise NotImplementedError

    def synthesized(self, text: str, pcm: np.ndarray) -> None:
        """Called as the audio is handed to the agent (a hook for measurements)."""

    def synthesize(
        self, text: str, *, conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS
    ) -> tts.ChunkedStream:
        return _PcmStream(tts=self, input_text=text, conn_options=conn_options)


class _PcmStream(tts.ChunkedStream):
    async def _run(self, output_emitter: tts.AudioEmitter) -> None:
        owner: PcmTTS = self._tts  # type: ignore[assignment]
        pcm, rate = await asyncio.to_thread(owner.pcm_for, self._input_text)
        output_emitter.initialize(
            request_id=uuid.uuid4().hex, sample_rate=rate, num_channels=1, mime_type="audio/pcm"
        )
        owner.synthesized(self._input_text, pcm)
        output_emitter.push(pcm.tobytes())
        output_emitter.flush()


class LocalTTS(PcmTTS):
    """The local voice: piper's joe when installed, else espeak-ng (a blocking synthesiser,
    hence off the loop)."""

    def __init__(self, *, voice: str | None = None, sample_rate: int = 22050) -> None:
        super().__init__(sample_rate=sample_rate)
        self._voice = voice

    def pcm_for(self, text: str) -> tuple[np.ndarray, int]:
        return synthesize(text, self._voice)


@dataclass(frozen=True)
class ToolRequest:
    """A reply that calls a tool instead of speaking."""

    name: str
    arguments: str = "{}"


class SingleReplyLLM(llm.LLM):
    """An LLM whose every turn is one reply computed from the chat so far: text to speak,
    or a :class:`ToolRequest`."""

    def reply_for(self, chat_ctx: llm.ChatContext) -> str | ToolRequest:
        raise NotImplementedError

    def chat(
        self,
        *,
        chat_ctx: llm.ChatContext,
        tools: list[Any] | None = None,
        conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS,
        parallel_tool_calls: Any = NOT_GIVEN,
        tool_choice: Any = NOT_GIVEN,
        extra_kwargs: Any = NOT_GIVEN,
    ) -> llm.LLMStream:
        return _Reply(
            self,
            chat_ctx=chat_ctx,
            tools=tools or [],
            conn_options=conn_options,
            reply=self.reply_for(chat_ctx),
        )


class _Reply(llm.LLMStream):
    def __init__(self, owner: llm.LLM, *, reply: str | ToolRequest, **kwargs: Any) -> None:
        super().__init__(owner, **kwargs)
        self._reply = reply

    async def _run(self) -> None:
        if isinstance(self._reply, ToolRequest):
            call = llm.FunctionToolCall(
                name=self._reply.name,
                arguments=self._reply.arguments,
                call_id=f"call_{uuid.uuid4().hex[:12]}",
            )
            delta = llm.ChoiceDelta(role="assistant", tool_calls=[call])
        else:
            delta = llm.ChoiceDelta(role="assistant", content=self._reply)
        self._event_ch.send_nowait(llm.ChatChunk(id=uuid.uuid4().hex, delta=delta))


class EchoAssistant(SingleReplyLLM):
    """Greets, repeats what the user types, and looks orders up with a (slow) tool.

    A message that mentions an order calls the ``look_up_order`` tool (see
    :class:`OrderDesk`), whose result it then reads out: a protected tool turn to try.
    """

    greeting = (
        "Hello! I am a local avatar. Type a message and I will say it back, "
        "or ask me where your order is."
    )

    def reply_for(self, chat_ctx: llm.ChatContext) -> str | ToolRequest:
        items = chat_ctx.items
        last = items[-1] if items else None
        if isinstance(last, llm.FunctionCallOutput):
            return f"I found it: {last.output}" if not last.is_error else "Sorry, I could not find it."
        last_user = next(
            (m.text_content for m in reversed(chat_ctx.messages()) if m.role == "user"), None
        )
        if not last_user:
            return self.greeting
        if "order" in last_user.lower():
            return ToolRequest("look_up_order")
        return f"You said: {last_user}"


class OrderDesk(Agent):
    """The keyless assistant's persona, with a tool that takes a few seconds, like a CRM."""

    def __init__(
        self,
        *,
        instructions: str = "Repeat what the user types; look orders up.",
        lookup_seconds: float = 3.0,
    ) -> None:
        super().__init__(instructions=instructions)
        self._lookup_seconds = lookup_seconds

    @function_tool
    async def look_up_order(self) -> str:
        """Look up the status of the user's most recent order."""
        await asyncio.sleep(self._lookup_seconds)
        return "order 1042 shipped yesterday and arrives on Tuesday."
