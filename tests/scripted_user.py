"""A scripted user for turn-taking tests: fake VAD and STT driven by the test (instrumentation).

``user = ScriptedUser()``; give ``user.vad`` and ``user.stt`` to the ``AgentSession``; then
``await user.speak("book a table", seconds=1.0)`` makes LiveKit's own audio recognition see
exactly what a real VAD and STT would report for that utterance: start of speech, VAD
inference ticks with growing speech duration (what barge-in keys on), interim and final
transcripts, end of speech, then silence ticks (what end-of-turn detection keys on).
The audio itself is ignored, so the scenario is the same on every machine.
"""

from __future__ import annotations

import asyncio
import time

from livekit.agents import stt, vad
from livekit.agents.language import LanguageCode
from livekit.agents.types import DEFAULT_API_CONNECT_OPTIONS, NOT_GIVEN, APIConnectOptions

_TICK_S = 0.05


class _VADStream(vad.VADStream):
    async def _main_task(self) -> None:
        async for _ in self._input_ch:
            pass


class ScriptedVAD(vad.VAD):
    def __init__(self) -> None:
        super().__init__(capabilities=vad.VADCapabilities(update_interval=_TICK_S))
        self.streams: list[_VADStream] = []

    def stream(self) -> vad.VADStream:
        s = _VADStream(self)
        self.streams.append(s)
        return s

    def send(self, ev: vad.VADEvent) -> None:
        for s in self.streams:
            if not s._event_ch.closed:
                s._event_ch.send_nowait(ev)


class _STTStream(stt.RecognizeStream):
    async def _run(self) -> None:
        async for _ in self._input_ch:
            pass


class ScriptedSTT(stt.STT):
    def __init__(self) -> None:
        super().__init__(capabilities=stt.STTCapabilities(streaming=True, interim_results=True))
        self.streams: list[_STTStream] = []

    async def _recognize_impl(self, buffer, *, language=NOT_GIVEN, conn_options=None):
        raise NotImplementedError("the scripted STT only streams")

    def stream(
        self,
        *,
        language=NOT_GIVEN,
        conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS,
    ) -> stt.RecognizeStream:
        s = _STTStream(stt=self, conn_options=conn_options)
        self.streams.append(s)
        return s

    def send(self, kind: stt.SpeechEventType, text: str = "") -> None:
        alternatives = (
            [stt.SpeechData(language=LanguageCode("en"), text=text, confidence=1.0)] if text else []
        )
        for s in self.streams:
            if not s._event_ch.closed:
                s._event_ch.send_nowait(stt.SpeechEvent(type=kind, alternatives=alternatives))


class ScriptedUser:
    """Speaks on cue, through fake VAD and STT events."""

    def __init__(self) -> None:
        self.vad = ScriptedVAD()
        self.stt = ScriptedSTT()
        self.spoke_at: list[float] = []

    def _vad(self, kind: vad.VADEventType, *, speech: float, silence: float, speaking: bool) -> None:
        self.vad.send(
            vad.VADEvent(
                type=kind,
                samples_index=0,
                timestamp=time.time(),
                speech_duration=speech,
                silence_duration=silence,
                probability=1.0 if speaking else 0.0,
                speaking=speaking,
                raw_accumulated_silence=silence,
                raw_accumulated_speech=speech,
            )
        )

    async def speak(self, text: str, *, seconds: float = 1.0, trailing_silence: float = 1.0) -> None:
        """Say ``text`` over ``seconds``; returns when the trailing silence has passed."""
        started = time.monotonic()
        self.spoke_at.append(started)
        self._vad(vad.VADEventType.START_OF_SPEECH, speech=0.0, silence=0.0, speaking=True)
        self.stt.send(stt.SpeechEventType.START_OF_SPEECH)
        words = text.split()
        interim_sent = False
        while (elapsed := time.monotonic() - started) < seconds:
            self._vad(vad.VADEventType.INFERENCE_DONE, speech=elapsed, silence=0.0, speaking=True)
            if not interim_sent and elapsed >= seconds / 2 and words:
                self.stt.send(
                    stt.SpeechEventType.INTERIM_TRANSCRIPT, " ".join(words[: max(1, len(words) // 2)])
                )
                interim_sent = True
            await asyncio.sleep(_TICK_S)
        self._vad(vad.VADEventType.END_OF_SPEECH, speech=seconds, silence=0.0, speaking=False)
        self.stt.send(stt.SpeechEventType.FINAL_TRANSCRIPT, text)
        self.stt.send(stt.SpeechEventType.END_OF_SPEECH)
        quiet_from = time.monotonic()
        while (silence := time.monotonic() - quiet_from) < trailing_silence:
            self._vad(vad.VADEventType.INFERENCE_DONE, speech=0.0, silence=silence, speaking=False)
            await asyncio.sleep(_TICK_S)
