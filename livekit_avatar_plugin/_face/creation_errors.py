"""Why an avatar could not be made, one class per cause; each carries the exit status the
``livekit-avatar create`` command returns for it."""

from __future__ import annotations

from .._errors import AvatarError

# ----------------------------------------------------------------------------- errors


class AvatarCreationError(AvatarError):
    """Avatar creation failed; ``exit_code`` is the CLI exit status for this cause."""

    exit_code = 10


class NoFaceError(AvatarCreationError):
    exit_code = 11


class FaceTooSmallError(AvatarCreationError):
    exit_code = 12


class CorruptImageError(AvatarCreationError):
    exit_code = 13


class NotAnImageError(AvatarCreationError):
    exit_code = 14


class ImageTooLargeError(AvatarCreationError):
    exit_code = 15


class CorruptVideoError(AvatarCreationError):
    """A video file that cannot be decoded, or ends before its header says it does."""

    exit_code = 16


class VideoTooLargeError(AvatarCreationError):
    """A video file too large to read, or frames too large to track."""

    exit_code = 17


class VideoTooLongError(AvatarCreationError):
    exit_code = 18


class VideoTooShortError(AvatarCreationError):
    exit_code = 19


class StillVideoError(AvatarCreationError):
    """A still image inside a video container: nothing moves, so there is no footage."""

    exit_code = 20


class PartRangeError(AvatarCreationError):
    """An --idle, --listening or --talking range outside the clip, or without a face."""

    exit_code = 21
