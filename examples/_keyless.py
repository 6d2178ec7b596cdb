"""Keyless stand-ins so the example agent runs with no cloud account.

``EspeakTTS`` speaks with the local ``espeak-ng`` (Debian package); ``EchoAssistant`` is a
tiny scripted "LLM" that greets and answers typed messages by repeating them. Replace both
with real models (see the OpenAI path in ``agent.py``) for an actual assistant.
"""

from __future__ import annotations

import asyncio
import io
import shutil
import uuid
import wave
from typing import Any

from livekit.agents import llm, tts
from livekit.agents.types import DEFAULT_API_CONNECT_OPTIONS, NOT_GIVEN, APIConnectOptions


class EspeakTTS(tts.TTS):
    def __init__(self, *, voice: str = "en-us", words_per_minute: int = 165) -> None:
        if shutil.which("espeak-ng") is None:
            raise RuntimeError("espeak-ng is not installed (apt-get install espeak-ng)")
        super().__init__(
            capabilities=tts.TTSCapabilities(streaming=False), sample_rate=22050, num_channels=1
        )
        self._voice = voice
        self._wpm = words_per_minute

    def synthesize(
        self, text: str, *, conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS
    ) -> tts.ChunkedStream:
        return _EspeakStream(tts=self, input_text=text, conn_options=conn_options)


class _EspeakStream(tts.ChunkedStream):
    async def _run(self, output_emitter: tts.AudioEmitter) -> None:
        owner: EspeakTTS = self._tts  # type: ignore[assignment]
        proc = await asyncio.create_subprocess_exec(
            "espeak-ng", "--stdout", "-v", owner._voice, "-s", str(owner._wpm), self._input_text,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        wav_bytes, err = await proc.communicate()
        if proc.returncode != 0:
            raise RuntimeError(f"espeak-ng failed: {err.decode(errors='replace').strip()}")
        with wave.open(io.BytesIO(wav_bytes)) as w:
            rate, pcm = w.getframerate(), w.readframes(w.getnframes())
        output_emitter.initialize(
            request_id=uuid.uuid4().hex, sample_rate=rate, num_channels=1, mime_type="audio/pcm"
        )
        output_emitter.push(pcm)
        output_emitter.flush()


class EchoAssistant(llm.LLM):
    """Greets, then answers each typed message by repeating it."""

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
        last_user = next(
            (m.text_content for m in reversed(chat_ctx.messages()) if m.role == "user"), None
        )
        reply = (
            f"You said: {last_user}"
            if last_user
            else "Hello! I am a local avatar. Type a message and I will say it back."
        )
        return _Reply(self, chat_ctx=chat_ctx, tools=tools or [], conn_options=conn_options, reply=reply)


class _Reply(llm.LLMStream):
    def __init__(self, owner: EchoAssistant, *, reply: str, **kwargs: Any) -> None:
        super().__init__(owner, **kwargs)
        self._reply = reply

    async def _run(self) -> None:
        self._event_ch.send_nowait(
            llm.ChatChunk(
                id=uuid.uuid4().hex, delta=llm.ChoiceDelta(role="assistant", content=self._reply)
            )
        )
