"""One exception tree: every error the plugin defines derives from ``AvatarError``, and the
public ones are exported at the top level."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import livekit_avatar_plugin as plugin
from livekit_avatar_plugin import AvatarError


def _modules():
    for info in pkgutil.walk_packages(plugin.__path__, plugin.__name__ + "."):
        if ".training" in info.name or info.name.endswith("__main__"):  # torch (train extra); a program
            continue
        yield importlib.import_module(info.name)


def test_every_error_the_plugin_defines_derives_from_avatar_error():
    defined = {cls for mod in _modules() for _, cls in inspect.getmembers(mod, inspect.isclass)
               if issubclass(cls, BaseException) and cls.__module__.startswith(plugin.__name__)}
    assert len(defined) >= 20
    assert sorted(c.__qualname__ for c in defined if not issubclass(c, AvatarError)) == []


def test_the_public_errors_are_exported_and_keep_their_builtin_bases():
    exported = {name for name in plugin.__all__ if name.endswith("Error")}
    assert {"AvatarError", "AvatarSessionError", "AvatarCreationError", "AvatarPackageError",
            "AvatarDispatchError", "AudioInputError", "ProviderUnavailableError"} <= exported
    assert issubclass(plugin.AvatarPackageError, ValueError) and issubclass(plugin.AudioInputError, ValueError)
    assert issubclass(plugin.AvatarSessionError, RuntimeError)
