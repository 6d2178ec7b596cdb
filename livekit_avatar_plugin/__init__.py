"""A local, lip-synced talking face for LiveKit voice agents.

Data flows one way::

    agent TTS audio -> audio/ (features, lip-sync model) -> mouth motion
                    -> render/ (face renderer over face/ avatar)  -> frames
                    -> generator + participant (A/V sync)          -> LiveKit room
    turns (first message, protected turns) steers the agent's side of the same session.

The public API is :class:`AvatarSession` and its options; everything else is internal.
"""

from ._onnx import ProviderUnavailableError
from .audio.input import AudioInputError
from .config import AvatarSessionOptions, FirstMessage, ToolProtection, VideoOptions
from .dispatch.client import AvatarDispatchError
from .errors import AvatarError
from .face.avatar import AvatarCreationError
from .face.package import AvatarPackageError
from .lifecycle import AvatarClosedEvent, AvatarFailedEvent, AvatarRecoveredEvent, CloseReason
from .pipeline import FacePipeline, prewarm
from .session import AvatarSession, AvatarSessionError
from .state import ConversationState
from .turns import Protection, ProtectionReleasedEvent, ProtectionStartedEvent

__all__ = [
    "AudioInputError",
    "AvatarClosedEvent",
    "AvatarCreationError",
    "AvatarDispatchError",
    "AvatarError",
    "AvatarFailedEvent",
    "AvatarPackageError",
    "AvatarRecoveredEvent",
    "AvatarSession",
    "AvatarSessionError",
    "AvatarSessionOptions",
    "CloseReason",
    "ConversationState",
    "FacePipeline",
    "FirstMessage",
    "Protection",
    "ProtectionReleasedEvent",
    "ProtectionStartedEvent",
    "ProviderUnavailableError",
    "ToolProtection",
    "VideoOptions",
    "prewarm",
]

__version__ = "0.1.0"
