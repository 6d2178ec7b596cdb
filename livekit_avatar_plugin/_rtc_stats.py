"""What the publishing side reads from ``Room.get_rtc_stats()``."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator
from typing import Any

from livekit import rtc

logger = logging.getLogger("livekit_avatar_plugin.participant")

# A VP8 or H.264 simulcast viewer of the lowest layer decodes only key frames once the
# avatar's own link to the server loses packets: WebRTC fills what the encoder leaves of
# its budget with padding on that layer's stream, the server cannot tell lost padding
# from lost video, and the layer reaches viewers with holes nobody can fill. The plugin
# can stop neither, so it says so: a warning once the loss the server reports for our
# video stays at or above this fraction for two checks this far apart (frequent: the
# same reading readies the agent's own voice for a hand-over, see _handover).
_UPLINK_LOSS_WARN = 0.02
_UPLINK_CHECK_S = 1.0
PADDING_BLIND_CODECS = ("vp8", "h264")


def _publisher_entries(stats: Any, kind: str) -> Iterator[Any]:
    """The ``kind`` entries (e.g. ``"candidate_pair"``) of a room's publishing transport,
    from ``Room.get_rtc_stats()``."""
    return (getattr(e, kind) for e in stats.publisher_stats if e.WhichOneof("stats") == kind)


def uplink_video_loss(stats: Any) -> float:
    """The largest fraction of our video packets the server reported lost in its latest
    receiver report, over the published layers, from ``Room.get_rtc_stats()``."""
    return max(
        (
            e.remote_inbound.fraction_lost
            for e in _publisher_entries(stats, "remote_inbound_rtp")
            if e.stream.kind == "video"
        ),
        default=0.0,
    )


def bandwidth_estimate(stats: Any) -> float:
    """WebRTC's send-side bandwidth estimate for a room's publishing transport, in bps,
    from ``Room.get_rtc_stats()``."""
    return max(
        (
            e.candidate_pair.available_outgoing_bitrate
            for e in _publisher_entries(stats, "candidate_pair")
        ),
        default=0.0,
    )


async def watch_uplink_loss(
    room: rtc.Room, on_loss: Callable[[float], None], *, warn_codec: str | None
) -> None:
    """Report our video's loss as the server sees it every ``_UPLINK_CHECK_S``; with
    ``warn_codec`` (a padding-blind simulcast), warn once if it stays lossy. Cancel the
    task to stop."""
    lossy_checks = 0
    while True:
        await asyncio.sleep(_UPLINK_CHECK_S)
        try:
            loss = uplink_video_loss(await room.get_rtc_stats())
        except Exception:
            logger.debug("could not read the uplink's loss", exc_info=True)
            continue
        on_loss(loss)
        lossy_checks = lossy_checks + 1 if loss >= _UPLINK_LOSS_WARN else 0
        if warn_codec is not None and lossy_checks >= 2:
            logger.warning(
                "the avatar's link to the LiveKit server is losing %.0f %% of its video "
                "packets: viewers of the lowest %s simulcast layer will see the face "
                "freeze (they decode only key frames). Run the avatar nearer the server, "
                "or publish with video_codec='vp9' or a pinned video_quality.",
                loss * 100, warn_codec.upper(),
            )  # fmt: skip
            warn_codec = None
