"""A viewer's token: join one room, watch and listen, talk by microphone and chat.

Nothing else: no admin, no room creation or listing, no camera or screen share, no
metadata updates, no agent registration. Short-lived, because LiveKit refreshes the token
of a connected participant by itself; the TTL only bounds how long it can be used to join.
"""

from __future__ import annotations

import datetime
import re

from livekit import api
from pydantic import BaseModel, ConfigDict, Field, field_validator

# Room and identity names the page may ask for: no separators, spaces or control characters.
_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


class ViewerGrant(BaseModel):
    """What a viewer token is for."""

    model_config = ConfigDict(frozen=True)

    room: str
    identity: str
    name: str = "viewer"
    ttl_s: int = Field(default=600, ge=30, le=3600)

    @field_validator("room", "identity")
    @classmethod
    def _plain_name(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError(f"{value!r}: use 1-64 letters, digits, '-' or '_'")
        return value


def viewer_video_grants(room: str) -> api.VideoGrants:
    return api.VideoGrants(
        room_join=True,
        room=room,
        can_subscribe=True,
        can_publish=True,
        # A viewer speaks by microphone only; chat and transcripts travel as data.
        can_publish_sources=["microphone"],
        can_publish_data=True,
        can_update_own_metadata=False,
    )


def mint_viewer_token(api_key: str, api_secret: str, grant: ViewerGrant) -> str:
    return (
        api.AccessToken(api_key, api_secret)
        .with_identity(grant.identity)
        .with_name(grant.name)
        .with_grants(viewer_video_grants(grant.room))
        .with_ttl(datetime.timedelta(seconds=grant.ttl_s))
        .to_jwt()
    )
