"""The face pipeline: audio -> mouth motion -> frames, with models loaded once per process.

A :class:`FacePipeline` hands each session its own stateful mouth-motion stream and
renderer, while the heavy parts (ONNX sessions, the avatar package) are shared by every
session in the process. Call :func:`prewarm` from a worker's ``prewarm_fnc`` so the first
job does not pay for loading them.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import threading
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from ._generator import AvatarVideoGenerator, FrameRenderer, MouthMotion

logger = logging.getLogger("livekit_avatar_plugin.pipeline")


@runtime_checkable
class FacePipeline(Protocol):
    """Makes the per-session halves of the face: a mouth-motion stream and a renderer."""

    def create_motion(self) -> MouthMotion: ...

    def create_renderer(self, width: int, height: int) -> FrameRenderer: ...


class _LipSyncMotion:
    """Adapts a lip-sync model stream to :class:`MouthMotion`."""

    def __init__(self, model: Any) -> None:
        self._stream = model.stream()
        self.fps: float = float(model.fps)
        self.channels: tuple[str, ...] = tuple(model.channels)

    def push(self, pcm: np.ndarray, sample_rate: int) -> np.ndarray:
        return self._stream.push(pcm, sample_rate)

    def flush(self) -> np.ndarray:
        return self._stream.flush()

    def reset(self) -> None:
        self._stream.reset()


class DefaultFacePipeline:
    """The shipped pipeline: the trained lip-sync model driving the renderer of the avatar's
    kind (a photo avatar's warped portrait, or a footage avatar's own frames)."""

    def __init__(self, avatar: Any, lipsync_model: Any, background: Any = "keep") -> None:
        from ._face.footage import FootageAvatar
        from ._render.background import parse_background

        self.avatar = avatar
        self.lipsync_model = lipsync_model
        self.background = parse_background(background)
        self._renderer_class: type[Any]  # either takes (avatar, width=, height=, template=)
        if isinstance(avatar, FootageAvatar):
            from ._render.footage_renderer import FootageRenderer

            self._renderer_class = FootageRenderer
        else:
            from ._render.renderer import FaceRenderer

            self._renderer_class = FaceRenderer
        self._templates: dict[tuple[int, int], Any] = {}
        self._backgrounds: dict[tuple[int, int, Any], Any] = {}
        self._templates_lock = threading.Lock()

    def create_motion(self) -> MouthMotion:
        return _LipSyncMotion(self.lipsync_model)

    def create_renderer(self, width: int, height: int, background: Any = None) -> FrameRenderer:
        """A renderer with its own motion state; what depends only on the output size
        (framing, fields, texture) is computed once per process and shared.
        ``background`` (default: the pipeline's) is "keep", a colour or an image file."""
        from ._render.background import BackgroundRenderer, parse_background

        bg = self.background if background is None else parse_background(background)
        with self._templates_lock:
            template = self._templates.get((width, height))
            if template is None:
                template = self._renderer_class(self.avatar, width=width, height=height)
                self._templates[(width, height)] = template
        renderer = self._renderer_class(self.avatar, width=width, height=height, template=template)
        if bg == "keep":
            return renderer
        with self._templates_lock:
            shared = self._backgrounds.get((width, height, bg))
            wrapped = BackgroundRenderer(renderer, bg, shared=shared)
            self._backgrounds.setdefault((width, height, bg), wrapped)
        return wrapped


_lock = threading.Lock()
_pipelines: dict[str, DefaultFacePipeline] = {}


def _avatar_key(avatar: Any) -> str:
    if isinstance(avatar, (str, Path)):
        return "default" if str(avatar) == "default" else str(Path(avatar).resolve())
    return f"object:{id(avatar)}"


def limit_blas_threads() -> None:
    """One BLAS thread per process: the renderer's matrix products are small, and idle
    OpenBLAS threads spin between them. Measured with one 512x512 avatar: 1.06 cores for
    the process with numpy's default threads, 0.31 core with one."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1, user_api="blas")


def load_pipeline(avatar: Any = "default", background: Any = "keep") -> DefaultFacePipeline:
    """The process-wide pipeline for ``avatar`` ("default", a package path or an Avatar);
    its renderers draw ``background`` ("keep", a colour or an image file) behind the
    person. Pipelines of one avatar share its models and per-size templates."""
    from ._render.background import parse_background

    bg = parse_background(background)
    key = _avatar_key(avatar)
    if bg != "keep":
        base = load_pipeline(avatar)
        with _lock:
            variant = _pipelines.get(f"{key}|{bg}")
            if variant is None:
                variant = copy.copy(base)  # shares the avatar, model and templates
                variant.background = bg
                _pipelines[f"{key}|{bg}"] = variant
            return variant
    with _lock:
        cached = _pipelines.get(key)
        if cached is not None:
            return cached
        if not _pipelines:
            limit_blas_threads()
        from ._audio.lipsync import LipSyncModel
        from ._face.avatar import default_avatar, load_package

        if isinstance(avatar, (str, Path)):
            loaded = default_avatar() if key == "default" else load_package(Path(avatar))
        else:
            loaded = avatar
        pipeline = DefaultFacePipeline(loaded, LipSyncModel.load())
        _pipelines[key] = pipeline
        logger.info("face pipeline loaded for avatar %s", key)
        return pipeline


def prewarm(avatar: Any = "default", sizes: tuple[tuple[int, int], ...] | None = None) -> None:
    """Load the models for ``avatar`` and frame it for ``sizes`` (default: the default
    video options' size) now, e.g. from ``WorkerOptions(prewarm_fnc=...)``, so the first
    session pays for neither."""
    from ._config import VideoOptions

    pipeline = load_pipeline(avatar)
    default = VideoOptions()
    for width, height in sizes or ((default.width, default.height),):
        pipeline.create_renderer(width, height)


async def build_generator(
    pipeline: FacePipeline, *, width: int, height: int, fps: float, sample_rate: int
) -> AvatarVideoGenerator:
    """A session's generator. Its motion stream and renderer are made off the event loop:
    framing a portrait for a new output size takes ~0.3 s of numpy, and a loop blocked
    that long while a room is connecting makes LiveKit's FFI give the connection up."""
    motion, renderer = await asyncio.to_thread(
        lambda: (pipeline.create_motion(), pipeline.create_renderer(width, height))
    )
    return AvatarVideoGenerator(
        motion=motion, renderer=renderer, width=width, height=height, fps=fps,
        sample_rate=sample_rate,
    )  # fmt: skip
