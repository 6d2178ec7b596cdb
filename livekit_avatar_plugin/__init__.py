"""A local, lip-synced talking face for LiveKit voice agents.

Data flows one way::

    agent TTS audio -> _audio/ (features, lip-sync model) -> mouth motion
                    -> _render/ (face renderer over a _face/ avatar) -> frames
                    -> _generator + _publisher (A/V sync)            -> LiveKit room
    _turns (first message, protected turns) steers the agent's side of the same session.

The public API is :class:`AvatarSession`, its options, events and errors, exported here;
the modules with a leading underscore are internal. ``cli`` is the ``livekit-avatar``
command, ``training`` and ``evaluation`` its offline tools, and ``keyless``,
``local_server`` and ``viewer`` serve the demo.
"""

from ._onnx import ProviderUnavailableError
from ._audio.input import AudioInputError
from ._config import AvatarSessionOptions, FirstMessage, ToolProtection, VideoOptions
from ._dispatch.client import AvatarDispatchError
from ._errors import AvatarError
from ._face.avatar import AvatarCreationError
from ._face.package import AvatarPackageError
from ._lifecycle import AvatarClosedEvent, AvatarFailedEvent, AvatarRecoveredEvent, CloseReason
from ._pipeline import FacePipeline, prewarm
from ._session import AvatarSession, AvatarSessionError
from ._state import ConversationState
from ._turns import Protection, ProtectionReleasedEvent, ProtectionStartedEvent

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
