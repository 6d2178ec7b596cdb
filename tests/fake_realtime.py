"""A scripted speech-to-speech model in the shape of OpenAI's realtime API (instrumentation).

It does what the realtime plugin does on the wire, minus the model: server-side turn
detection events (``input_speech_started`` / ``input_speech_stopped``), the user's
transcript, and a generation whose audio is the signal TTS's measurement signal for the
next script line. ``user_says()`` plays the part of the user talking to the server.
"""

from __future__ import annotations

import asyncio
import uuid

import numpy as np
from livekit import rtc
from livekit.agents import llm
from livekit.agents.types import NOT_GIVEN

from .fakes import SAMPLE_RATE, signal_for

_FRAME_MS = 20


class FakeRealtimeModel(llm.RealtimeModel):
    def __init__(self, replies: list[str]) -> None:
        super().__init__(
            capabilities=llm.RealtimeCapabilities(
                message_truncation=True,
                turn_detection=True,
                user_transcription=True,
                auto_tool_reply_generation=False,
                audio_output=True,
                manual_function_calls=False,
            )
        )
        self.replies = list(replies)
        self.calls = 0
        self.sessions: list[FakeRealtimeSession] = []

    def next_reply(self) -> str:
        reply = self.replies[min(self.calls, len(self.replies) - 1)]
        self.calls += 1
        return reply

    def session(self, *, turn_detection_disabled: bool = False) -> FakeRealtimeSession:
        s = FakeRealtimeSession(self)
        self.sessions.append(s)
        return s

    async def aclose(self) -> None:
        pass

    async def user_says(self, text: str, *, seconds: float = 1.0) -> None:
        """The server hears the user: speech start (barge-in), stop, transcript, response."""
        s = self.sessions[-1]
        s.emit("input_speech_started", llm.InputSpeechStartedEvent())
        await asyncio.sleep(seconds)
        s.emit("input_speech_stopped", llm.InputSpeechStoppedEvent(user_transcription_enabled=True))
        s.emit(
            "input_audio_transcription_completed",
            llm.InputTranscriptionCompleted(
                item_id=uuid.uuid4().hex, transcript=text, is_final=True
            ),
        )
        s.emit("generation_created", s.generation(user_initiated=False))


class FakeRealtimeSession(llm.RealtimeSession):
    def __init__(self, model: FakeRealtimeModel) -> None:
        super().__init__(model)
        self._model = model
        self._chat_ctx = llm.ChatContext.empty()
        self._tools = llm.ToolContext.empty()
        self.interrupts = 0

    @property
    def chat_ctx(self) -> llm.ChatContext:
        return self._chat_ctx.copy()

    @property
    def tools(self) -> llm.ToolContext:
        return self._tools.copy()

    async def update_instructions(self, instructions: str) -> None:
        pass

    async def update_chat_ctx(self, chat_ctx: llm.ChatContext) -> None:
        self._chat_ctx = chat_ctx.copy()

    async def update_tools(self, tools) -> None:
        pass

    def update_options(self, *, tool_choice=NOT_GIVEN) -> None:
        pass

    def push_audio(self, frame: rtc.AudioFrame) -> None:
        pass

    def push_video(self, frame: rtc.VideoFrame) -> None:
        pass

    def generate_reply(self, *, instructions=NOT_GIVEN, tool_choice=NOT_GIVEN, tools=NOT_GIVEN):
        fut: asyncio.Future[llm.GenerationCreatedEvent] = asyncio.get_running_loop().create_future()
        fut.set_result(self.generation(user_initiated=True))
        return fut

    def generation(self, *, user_initiated: bool) -> llm.GenerationCreatedEvent:
        text = self._model.next_reply()
        pcm = signal_for(text)

        async def audio():
            step = SAMPLE_RATE * _FRAME_MS // 1000
            for i in range(0, pcm.size, step):
                chunk = np.ascontiguousarray(pcm[i : i + step])
                yield rtc.AudioFrame(chunk.tobytes(), SAMPLE_RATE, 1, chunk.size)
                await asyncio.sleep(0)

        async def words():
            yield text

        async def messages():
            modalities: asyncio.Future[list] = asyncio.get_running_loop().create_future()
            modalities.set_result(["audio", "text"])
            yield llm.MessageGeneration(
                message_id=uuid.uuid4().hex,
                text_stream=words(),
                audio_stream=audio(),
                modalities=modalities,
            )

        async def no_calls():
            return
            yield

        return llm.GenerationCreatedEvent(
            message_stream=messages(),
            function_stream=no_calls(),
            user_initiated=user_initiated,
            response_id=uuid.uuid4().hex,
        )

    def commit_audio(self) -> None:
        pass

    def clear_audio(self) -> None:
        pass

    def interrupt(self) -> None:
        self.interrupts += 1

    def truncate(self, *, message_id, modalities, audio_end_ms, audio_transcript=NOT_GIVEN) -> None:
        pass

    async def aclose(self) -> None:
        pass
