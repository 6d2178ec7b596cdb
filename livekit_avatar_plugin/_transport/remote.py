"""What the two transports with a separate avatar participant share: the agent's room
declines the avatar's media, and the agent's speech goes to the avatar as a data stream."""

from __future__ import annotations

from livekit import rtc
from livekit.agents.types import ATTRIBUTE_PUBLISH_ON_BEHALF

from .. import _compat
from .._speech_stream import SpeechStreamOutput
from .base import Transport


class RemoteTransport(Transport):
    """Base of ``participant`` and ``dispatch``."""

    _agent_room: rtc.Room | None = None
    _output: SpeechStreamOutput | None = None

    def _ignore_avatar_media(self, room: rtc.Room) -> None:
        """Keep the agent's room from receiving its own avatar's audio and video.

        An agent room joined with LiveKit's default (subscribe to everything) would
        otherwise receive and decode the face it never shows: a VP8 decoder, an Opus
        decoder and the server's bandwidth, per session, for nothing. Only the avatar's
        tracks are declined; the user's stay subscribed.

        Declined once subscribed, not when published: unsubscribing a track whose
        subscription is still pending leaves LiveKit's FFI runtime (livekit 1.x) spinning,
        close to a full core for the rest of the session.
        """
        self._agent_room = room
        room.on("track_subscribed", self._unsubscribe_avatar_track)
        for participant in room.remote_participants.values():
            for publication in participant.track_publications.values():
                if publication.subscribed and publication.track is not None:
                    self._unsubscribe_avatar_track(publication.track, publication, participant)

    def _unsubscribe_avatar_track(
        self,
        track: rtc.Track,
        publication: rtc.RemoteTrackPublication,
        participant: rtc.RemoteParticipant,
    ) -> None:
        room = self._agent_room
        agent_identity = room.local_participant.identity if room is not None else None
        is_ours = participant.identity == self.identity or (
            agent_identity is not None
            and participant.attributes.get(ATTRIBUTE_PUBLISH_ON_BEHALF) == agent_identity
        )
        if is_ours:
            publication.set_subscribed(False)

    def _speech_output(self, room: rtc.Room) -> SpeechStreamOutput:
        if self._output is not None:
            _compat.forget_rpc_handlers(self._output)  # a face brought back replaces it
        self._output = SpeechStreamOutput(
            room,
            destination_identity=self.identity,
            sample_rate=self._options.audio_sample_rate,
            wait_remote_track=rtc.TrackKind.KIND_VIDEO,
            # The avatar reports when audio really starts playing, which keeps the
            # agent's transcript timing honest.
            wait_playback_start=True,
        )
        return self._output

    async def aclose(self, reason: str) -> None:
        if self._agent_room is not None:
            self._agent_room.off("track_subscribed", self._unsubscribe_avatar_track)
        if self._output is not None:
            _compat.forget_rpc_handlers(self._output)
        await super().aclose(reason)
