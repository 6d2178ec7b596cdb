"""Keyless stand-ins so an agent with this avatar runs with no cloud account.

``LocalTTS`` speaks with the local TTS (piper's joe voice when installed, else espeak-ng);
``EchoAssistant`` is a tiny scripted "LLM" that greets and answers each typed message by
repeating it. They make the example agent and the demo work offline; replace them with
real models for an actual assistant.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from livekit.agents import llm, tts
from livekit.agents.types import DEFAULT_API_CONNECT_OPTIONS, NOT_GIVEN, APIConnectOptions

from .audio.local_tts import synthesize


class LocalTTS(tts.TTS):
    def __init__(self, *, voice: str | None = None, sample_rate: int = 22050) -> None:
        super().__init__(
            capabilities=tts.TTSCapabilities(streaming=False),
            sample_rate=sample_rate,
            num_channels=1,
        )
        self._voice = voice

    def synthesize(
        self, text: str, *, conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS
    ) -> tts.ChunkedStream:
        return _LocalStream(tts=self, input_text=text, conn_options=conn_options)


class _LocalStream(tts.ChunkedStream):
    async def _run(self, output_emitter: tts.AudioEmitter) -> None:
        owner: LocalTTS = self._tts  # type: ignore[assignment]
        # The synthesiser is a blocking subprocess (or model); keep it off the event loop.
        pcm, rate = await asyncio.to_thread(synthesize, self._input_text, owner._voice)
        output_emitter.initialize(
            request_id=uuid.uuid4().hex, sample_rate=rate, num_channels=1, mime_type="audio/pcm"
        )
        output_emitter.push(pcm.tobytes())
        output_emitter.flush()


class SingleReplyLLM(llm.LLM):
    """An LLM whose every turn is one reply computed from the chat so far."""

    def reply_for(self, chat_ctx: llm.ChatContext) -> str:
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
    def __init__(self, owner: llm.LLM, *, reply: str, **kwargs: Any) -> None:
        super().__init__(owner, **kwargs)
        self._reply = reply

    async def _run(self) -> None:
        self._event_ch.send_nowait(
            llm.ChatChunk(
                id=uuid.uuid4().hex, delta=llm.ChoiceDelta(role="assistant", content=self._reply)
            )
        )


class EchoAssistant(SingleReplyLLM):
    """Greets, then answers each typed message by repeating it."""

    greeting = "Hello! I am a local avatar. Type a message and I will say it back."

    def reply_for(self, chat_ctx: llm.ChatContext) -> str:
        last_user = next(
            (m.text_content for m in reversed(chat_ctx.messages()) if m.role == "user"), None
        )
        return f"You said: {last_user}" if last_user else self.greeting
