"""Scripted stand-ins for the agent's LLM and TTS (test instrumentation only).

``ScriptedLLM`` answers each turn with the next line of a script. ``SignalTTS`` does not
speak: it synthesises a measurement signal chosen by the text it is given:

* ``"clicks <seconds>"``: silence with short broadband clicks at the centres of video
  frame slots (so the frame that must flash is unambiguous), first click at 20 ms;
* ``"tone <seconds>"``: a steady tone, for measuring how fast audio stops on interruption.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
from livekit.agents import llm

from livekit_avatar_plugin.keyless import PcmTTS, SingleReplyLLM, ToolRequest

SAMPLE_RATE = 24000
VIDEO_FPS = 25.0
CLICK_MS = 4.0


def click_times(seconds: float, *, fps: float = VIDEO_FPS, seed: int = 7) -> np.ndarray:
    """Click times (s, from segment start) at frame-slot centres, 200-400 ms apart."""
    rng = np.random.default_rng(seed)
    slots = [0]
    while True:
        nxt = slots[-1] + int(rng.integers(5, 11))  # 5-10 frames apart at 25 fps
        if (nxt + 1) / fps > seconds - 0.1:
            break
        slots.append(nxt)
    return (np.asarray(slots, dtype=np.float64) + 0.5) / fps


def click_track(seconds: float, *, sample_rate: int = SAMPLE_RATE, seed: int = 7) -> np.ndarray:
    n = int(round(seconds * sample_rate))
    pcm = np.zeros(n, dtype=np.float32)
    rng = np.random.default_rng(seed)
    width = int(sample_rate * CLICK_MS / 1000)
    for t in click_times(seconds, seed=seed):
        start = int(round(t * sample_rate))
        burst = rng.uniform(-0.8, 0.8, width).astype(np.float32)
        pcm[start : start + width] = burst[: max(0, min(width, n - start))]
    return (pcm * 32767).astype(np.int16)


def tone_track(seconds: float, *, sample_rate: int = SAMPLE_RATE, hz: float = 330.0) -> np.ndarray:
    t = np.arange(int(round(seconds * sample_rate))) / sample_rate
    return (0.3 * np.sin(2 * np.pi * hz * t) * 32767).astype(np.int16)


def signal_for(text: str) -> np.ndarray:
    words = text.strip().split()
    kind = words[0].lower() if words else "clicks"
    seconds = float(words[1]) if len(words) > 1 else 2.0
    if kind == "tone":
        return tone_track(seconds)
    return click_track(seconds)


# A script line that makes the LLM call a tool instead of speaking.
ToolCall = ToolRequest


class ScriptedLLM(SingleReplyLLM):
    """Answers turn n with line n of the script (the last line repeats).

    A line is text to speak or a :class:`ToolCall`. ``seen`` keeps the user messages each
    call was given and ``prompts`` all its messages' text, so tests can check what reached
    the model.
    """

    def __init__(self, replies: list[str | ToolCall]) -> None:
        super().__init__()
        self._replies = list(replies)
        self.calls = 0
        self.seen: list[list[str]] = []
        self.prompts: list[str] = []

    def reply_for(self, chat_ctx: llm.ChatContext):
        self.seen.append([m.text_content or "" for m in chat_ctx.messages() if m.role == "user"])
        self.prompts.append("\n".join(m.text_content or "" for m in chat_ctx.messages()))
        reply = self._replies[min(self.calls, len(self._replies) - 1)]
        self.calls += 1
        return reply


@dataclass
class SynthesisRecord:
    text: str
    first_byte_at: float
    samples: int


@dataclass
class _History:
    records: list[SynthesisRecord] = field(default_factory=list)


class SignalTTS(PcmTTS):
    def __init__(self, *, sample_rate: int = SAMPLE_RATE) -> None:
        super().__init__(sample_rate=sample_rate)
        self.history = _History()

    def pcm_for(self, text: str) -> tuple[np.ndarray, int]:
        return signal_for(text), self.sample_rate

    def synthesized(self, text: str, pcm: np.ndarray) -> None:
        self.history.records.append(SynthesisRecord(text, time.monotonic(), int(pcm.size)))
