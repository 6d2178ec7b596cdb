"""The failover sink's bookkeeping, with recording sinks in place of the avatar and the
agent's own track: which sink each reply goes to, and what playback it reports. The real
tracks are tests/test_failover.py's and tests/test_recover.py's."""

from __future__ import annotations

import asyncio

from livekit import rtc
from livekit.agents.voice.io import AudioOutput, AudioOutputCapabilities

from livekit_avatar_plugin._failover import FailoverAudioOutput

RATE = 24000


def _frame(seconds: float = 0.1) -> rtc.AudioFrame:
    n = int(RATE * seconds)
    return rtc.AudioFrame(bytes(2 * n), RATE, 1, n)


class RecordingSink(AudioOutput):
    """Counts what it is given; reports a segment finished when told to."""

    def __init__(self, name: str) -> None:
        super().__init__(label=name, capabilities=AudioOutputCapabilities(pause=False), sample_rate=RATE)
        self.seconds = 0.0
        self.flushes = 0
        self.cleared = 0
        self.detached = False

    async def capture_frame(self, frame: rtc.AudioFrame) -> None:
        await super().capture_frame(frame)
        self.seconds += frame.duration

    def flush(self) -> None:
        super().flush()
        self.flushes += 1

    def clear_buffer(self) -> None:
        self.cleared += 1

    def on_detached(self) -> None:
        self.detached = True

    def finish(self, position: float) -> None:
        self.on_playback_finished(playback_position=position, interrupted=False)


class Failover(FailoverAudioOutput):
    def __init__(self, primary: AudioOutput) -> None:
        super().__init__(primary, room=rtc.Room(), sample_rate=RATE)
        self.fallbacks: list[RecordingSink] = []

    def _make_fallback(self) -> RecordingSink:
        self.fallbacks.append(RecordingSink("fallback"))
        return self.fallbacks[-1]


def _watched() -> tuple[RecordingSink, Failover, list]:
    """A failover sink over a recording avatar, and the playback_finished events it emits."""
    avatar = RecordingSink("avatar")
    out = Failover(avatar)
    finished: list = []
    out.on("playback_finished", finished.append)
    return avatar, out, finished


async def _reply(out: FailoverAudioOutput, seconds: float, *, flush: bool = True) -> None:
    for _ in range(round(seconds / 0.1)):
        await out.capture_frame(_frame())
    if flush:
        out.flush()


async def test_recover_a_reply_heard_whole_before_the_failure_is_finished_at_once():
    avatar, out, finished = _watched()
    await _reply(out, 1.0)
    # A dispatched avatar's death is noticed late: it was heard to the end meanwhile.
    await out.failover(heard_s=1.2)
    assert out.fallbacks[0].seconds == 0.0 and out.fallbacks[0].flushes == 0
    assert len(finished) == 1 and abs(finished[0].playback_position - 1.0) < 1e-6
    assert not finished[0].interrupted


async def test_recover_the_face_takes_the_next_reply_never_the_current_one():
    avatar, out, finished = _watched()
    await _reply(out, 1.0, flush=False)
    await out.failover(heard_s=0.4)
    fallback = out.fallbacks[0]
    assert abs(fallback.seconds - 0.6) < 1e-6  # the unheard part, once
    back = RecordingSink("avatar, back")
    out.recover(back)
    assert out.recovering
    await _reply(out, 0.5)  # the rest of the same reply
    assert abs(fallback.seconds - 1.1) < 1e-6 and back.seconds == 0.0
    # A new reply while the fallback still plays the old one stays on the fallback...
    await _reply(out, 0.3)
    assert back.seconds == 0.0
    fallback.finish(1.1)
    fallback.finish(0.3)
    assert [round(e.playback_position, 6) for e in finished] == [1.5, 0.3]  # heard 0.4 + 1.1
    # ...and the first one after it has finished is the face's.
    await _reply(out, 0.2)
    assert abs(back.seconds - 0.2) < 1e-6 and not out.recovering
    back.finish(0.2)
    assert round(finished[-1].playback_position, 6) == 0.2
    await out.aclose()


async def test_recover_a_face_that_dies_before_it_speaks_is_dropped():
    avatar = RecordingSink("avatar")
    out = Failover(avatar)
    await _reply(out, 0.5, flush=False)
    await out.failover(heard_s=0.0)
    back = RecordingSink("avatar, back")
    out.recover(back)
    await out.failover(heard_s=0.0)  # it died again before the next reply
    assert back.detached and not out.recovering and len(out.fallbacks) == 1
    await _reply(out, 0.2)
    assert back.seconds == 0.0


async def test_an_interrupted_reply_reported_as_played_to_its_end_stays_interrupted():
    # Under load the speech stream's end can reach the avatar before the interruption:
    # it then reports the (cut) segment as played out.
    avatar, out, finished = _watched()
    await _reply(out, 1.0)
    out.clear_buffer()
    avatar.finish(0.8)
    assert finished[-1].interrupted and round(finished[-1].playback_position, 6) == 0.8
    await _reply(out, 0.5)  # the next reply is not marked
    avatar.finish(0.5)
    assert not finished[-1].interrupted


async def test_heavy_loss_hand_over_the_rest_of_a_reply_to_the_agents_voice_and_the_next_to_the_face():
    avatar, out, finished = _watched()
    await _reply(out, 1.0, flush=False)
    segment = out.face_segment()
    assert segment is not None
    await out.hand_over(segment, heard_s=0.4)
    fallback = out.fallbacks[0]
    assert abs(fallback.seconds - 0.6) < 1e-6  # the unheard part, once
    assert avatar.flushes == 1  # the avatar's stream is closed: it stops discarding there
    await _reply(out, 0.5)  # the rest of the same reply: the agent's voice
    assert abs(fallback.seconds - 1.1) < 1e-6 and abs(avatar.seconds - 1.0) < 1e-6
    fallback.finish(1.1)
    assert [round(e.playback_position, 6) for e in finished] == [1.5]  # heard 0.4 + 1.1
    # The avatar still reports the segment it gave up (late, on a lossy link): dropped.
    avatar.on_playback_finished(playback_position=0.4, interrupted=True)
    assert len(finished) == 1
    await _reply(out, 0.3)  # the next reply is the face's
    assert abs(avatar.seconds - 1.3) < 1e-6 and abs(fallback.seconds - 1.1) < 1e-6
    avatar.finish(0.3)
    assert [round(e.playback_position, 6) for e in finished] == [1.5, 0.3]
    assert not finished[-1].interrupted


async def test_heavy_loss_the_faces_late_report_of_a_handed_over_reply_is_dropped_in_order():
    # The avatar's report of the reply it gave up may arrive after the agent's voice has
    # finished it and the face has a new reply: it must not be taken for the new one's.
    avatar, out, finished = _watched()
    await _reply(out, 1.0)
    await out.hand_over(out.face_segment(), heard_s=0.0)  # none of it had arrived
    fallback = out.fallbacks[0]
    assert abs(fallback.seconds - 1.0) < 1e-6 and fallback.flushes == 1
    fallback.finish(1.0)
    await _reply(out, 0.5)  # the face's
    avatar.on_playback_finished(playback_position=0.0, interrupted=True)  # the stale one
    assert [round(e.playback_position, 6) for e in finished] == [1.0]
    avatar.finish(0.5)
    assert [round(e.playback_position, 6) for e in finished] == [1.0, 0.5]


async def test_heavy_loss_a_handed_over_reply_still_fails_over_cleanly():
    # Handed over, then the avatar dies: the agent's track it already speaks on goes on.
    avatar, out, finished = _watched()
    await _reply(out, 1.0, flush=False)
    await out.hand_over(out.face_segment(), heard_s=0.5)
    await out.failover(heard_s=0.0)
    assert len(out.fallbacks) == 1 and avatar.detached
    await _reply(out, 0.2)
    fallback = out.fallbacks[0]
    assert abs(fallback.seconds - 0.7) < 1e-6
    fallback.finish(0.7)
    assert [round(e.playback_position, 6) for e in finished] == [1.2]


async def test_heavy_loss_the_avatars_give_up_report_during_a_capture_does_not_end_the_reply():
    # The hand-over waits for a capture in progress; the avatar's report that it gave the
    # reply up can arrive meanwhile, and must not end the reply for the agent.
    gate = asyncio.Event()
    gate.set()

    class Slow(RecordingSink):
        async def capture_frame(self, frame: rtc.AudioFrame) -> None:
            await gate.wait()
            await super().capture_frame(frame)

    avatar = Slow("avatar")
    out = Failover(avatar)
    finished: list = []
    out.on("playback_finished", finished.append)
    await _reply(out, 1.0, flush=False)
    gate.clear()
    capture = asyncio.create_task(out.capture_frame(_frame()))
    await asyncio.sleep(0)
    handing = asyncio.create_task(out.hand_over(out.face_segment(), heard_s=0.4))
    await asyncio.sleep(0)
    avatar.on_playback_finished(playback_position=0.4, interrupted=True)
    assert finished == []
    gate.set()
    await capture
    await handing
    fallback = out.fallbacks[0]
    assert abs(fallback.seconds - 0.7) < 1e-6  # 1.1 s captured, 0.4 s heard
    out.flush()
    fallback.finish(0.7)
    assert [round(e.playback_position, 6) for e in finished] == [1.1]
    assert not finished[0].interrupted


async def test_heavy_loss_an_interruption_during_the_agents_rest_of_a_reply_stops_that_voice():
    avatar, out, finished = _watched()
    await _reply(out, 2.0)
    await out.hand_over(out.face_segment(), heard_s=0.5)
    fallback = out.fallbacks[0]
    out.clear_buffer()  # the user barges in while the agent's voice says the rest
    assert fallback.cleared == 1 and avatar.cleared == 0  # the face has nothing of it left
    fallback.on_playback_finished(playback_position=0.3, interrupted=True)
    assert round(finished[-1].playback_position, 6) == 0.8 and finished[-1].interrupted
    await _reply(out, 0.4)  # the next reply is the face's again
    assert abs(avatar.seconds - 2.4) < 1e-6


async def test_heavy_loss_a_claimed_reply_the_face_had_finished_is_reported_as_the_face_said():
    # Asked to give a reply up over the network, the avatar answers that it had finished
    # it: its report, held back while the question was out, goes on unchanged.
    avatar, out, finished = _watched()
    started: list = []
    out.on("playback_started", started.append)
    await _reply(out, 1.0)
    segment = out.face_segment()
    assert out.claim(segment, heard_s=0.9)
    assert not out.claim(segment, heard_s=0.9)  # one question at a time
    avatar.on_playback_started(created_at=5.0)
    avatar.finish(1.0)
    assert finished == [] and started == []  # held while the question is out
    out.release(segment)
    assert [e.created_at for e in started] == [5.0]
    assert [(round(e.playback_position, 6), e.interrupted) for e in finished] == [(1.0, False)]
    assert not out.fallbacks
    await _reply(out, 0.3)  # the face keeps the next reply
    assert abs(avatar.seconds - 1.3) < 1e-6


async def test_heavy_loss_the_give_up_report_before_its_answer_is_dropped_by_the_hand_over():
    # Over the network the avatar's report of the reply it gave up (reliable, late) or
    # its answer (a lossy beat) may come first; either way the rest is said once.
    avatar, out, finished = _watched()
    await _reply(out, 1.0, flush=False)
    segment = out.face_segment()
    assert out.claim(segment, heard_s=0.3)
    avatar.on_playback_finished(playback_position=0.4, interrupted=True)
    assert finished == []
    await out.hand_over(segment, heard_s=0.4)  # the answer: 0.4 s heard
    fallback = out.fallbacks[0]
    assert abs(fallback.seconds - 0.6) < 1e-6
    out.flush()
    fallback.finish(0.6)
    assert [(round(e.playback_position, 6), e.interrupted) for e in finished] == [(1.0, False)]


async def test_heavy_loss_a_face_dying_while_asked_to_give_up_is_taken_up_where_it_was_heard():
    avatar, out, finished = _watched()
    await _reply(out, 1.0)
    segment = out.face_segment()
    assert out.claim(segment, heard_s=0.3)  # the avatar's last word: 0.3 s heard
    await out.failover(heard_s=0.0)  # the transport's own guess is older
    fallback = out.fallbacks[0]
    assert abs(fallback.seconds - 0.7) < 1e-6
    fallback.finish(0.7)
    assert [round(e.playback_position, 6) for e in finished] == [1.0]
