"""One base for every error the plugin raises on purpose: ``except AvatarError`` catches
them all. Each also keeps the built-in base it had (``ValueError`` for bad input,
``RuntimeError`` for what went wrong while running), so existing handlers still match."""

from __future__ import annotations


class AvatarError(Exception):
    """Base class of the plugin's errors."""


class AvatarSessionError(AvatarError, RuntimeError):
    """The avatar could not be started."""
