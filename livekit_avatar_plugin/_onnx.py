"""One place that creates ONNX Runtime sessions: provider choice, threads, one log line.

The CUDA provider runs a model when onnxruntime offers it (the ``gpu`` extra installs
``onnxruntime-gpu``); otherwise the CPU provider does. ``LIVEKIT_AVATAR_ONNX_PROVIDER``
overrides the choice: ``auto`` (default), ``cpu``, or ``cuda`` (which fails, naming the
problem, when CUDA is not available rather than silently running on the CPU).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from ._errors import AvatarError

logger = logging.getLogger("livekit_avatar_plugin.onnx")

CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"
PROVIDER_ENV = "LIVEKIT_AVATAR_ONNX_PROVIDER"

ProviderPreference = Literal["auto", "cpu", "cuda"]


class ProviderUnavailableError(AvatarError, RuntimeError):
    """The requested execution provider is not offered by the installed onnxruntime."""


def provider_preference() -> ProviderPreference:
    value = os.environ.get(PROVIDER_ENV, "auto").strip().lower() or "auto"
    if value not in ("auto", "cpu", "cuda"):
        raise ValueError(f"{PROVIDER_ENV}={value!r}: expected auto, cpu or cuda")
    return value  # type: ignore[return-value]


def choose_providers(
    available: Sequence[str], preference: ProviderPreference = "auto"
) -> list[str]:
    """The providers to ask for, best first, from those onnxruntime reports as available.

    CPU always comes last as the fallback onnxruntime uses for nodes (or whole sessions)
    the GPU provider cannot take.
    """
    if preference == "cpu":
        return [CPU]
    if CUDA in available:
        return [CUDA, CPU]
    if preference == "cuda":
        raise ProviderUnavailableError(
            f"{PROVIDER_ENV}=cuda but onnxruntime offers only {list(available)}: install the "
            "'gpu' extra (onnxruntime-gpu) and the CUDA libraries it needs, or unset "
            f"{PROVIDER_ENV}"
        )
    return [CPU]


def create_session(
    path: str | Path,
    *,
    label: str,
    providers: Sequence[str] | None = None,
    intra_op_threads: int = 1,
) -> Any:
    """An ``onnxruntime.InferenceSession`` for ``path``; logs which provider runs ``label``.

    ``providers`` defaults to :func:`choose_providers` over what onnxruntime offers. Small
    per-frame models run best single-threaded: many sessions share a few cores, and
    ``session.run`` is thread-safe, so one session serves every avatar in the process.
    """
    import onnxruntime as ort

    available = ort.get_available_providers()
    wanted = list(providers) if providers else choose_providers(available, provider_preference())
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = max(1, int(intra_op_threads))
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    session = ort.InferenceSession(str(path), sess_options=opts, providers=wanted)
    running = session.get_providers()[0]
    if wanted[0] != running:
        # onnxruntime falls back quietly when e.g. the CUDA libraries fail to load.
        logger.warning(
            "%s (%s) runs on %s: %s was requested but could not be used",
            label, Path(path).name, running, wanted[0],
        )  # fmt: skip
    else:
        logger.info("%s (%s) runs on %s", label, Path(path).name, running)
    return session
