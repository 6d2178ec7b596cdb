"""The public surface: small, typed and explicit; demo-only code stays out of the runtime."""

from __future__ import annotations

import inspect
import subprocess
import sys

import livekit_avatar_plugin as plugin
from livekit_avatar_plugin import AvatarSession, AvatarSessionOptions

# Accepted by AvatarSession besides the option fields: the avatar, the pipeline, the server.
_NOT_OPTIONS = {"self", "avatar", "face_pipeline", "livekit_url", "api_key", "api_secret"}
_SHORTCUTS = {"video_quality", "video_codec"}


def test_every_option_is_an_explicit_keyword_argument_of_avatar_session():
    params = inspect.signature(AvatarSession.__init__).parameters
    assert not any(p.kind is p.VAR_KEYWORD for p in params.values()), "no **options: IDEs must see them"
    assert all(p.kind is p.KEYWORD_ONLY for name, p in params.items() if name != "self")
    assert set(params) - _NOT_OPTIONS == set(AvatarSessionOptions.model_fields) | _SHORTCUTS


def test_an_argument_left_out_takes_the_options_default():
    assert AvatarSession().options == AvatarSessionOptions()
    assert AvatarSession(goodbye="bye", idle_timeout_s=None).options == AvatarSessionOptions(
        goodbye="bye", idle_timeout_s=None
    )


def test_everything_exported_exists():
    for name in plugin.__all__:
        assert hasattr(plugin, name), name


def test_the_runtime_imports_no_demo_training_or_cli_code():
    code = (
        "import sys, livekit_avatar_plugin\n"
        "from livekit_avatar_plugin import AvatarSession, prewarm\n"
        "AvatarSession(mode='in_process'); AvatarSession(mode='dispatch'); AvatarSession()\n"
        "print('\\n'.join(m for m in sys.modules if m.startswith('livekit_avatar_plugin')))\n"
    )
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    demo_only = [m for m in loaded if any(
        part in m.split(".") for part in ("viewer", "keyless", "local_server", "training", "cli", "evaluation")
    )]
    assert not demo_only, demo_only
