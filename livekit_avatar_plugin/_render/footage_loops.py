"""The footage renderer's base frames: where the clip's canvas sits in the output (and
the still extension around a canvas narrower than the output), and each loop decoded
from its packets, frame by frame, with its head pose."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from livekit_avatar_plugin._face.footage import KEY_INTERVAL, FootageAvatar, Loop

if TYPE_CHECKING:
    import av

class Layout:
    """Where the canvas sits in one output size, and the still background around it."""

    def __init__(self, avatar: FootageAvatar, width: int, height: int) -> None:
        cw, ch = avatar.canvas
        fw = avatar.face_width
        centre = avatar.template.mean(0)
        # the head, with hair above and the chin below, must stay inside the output
        head_w, head_h = 1.7 * fw, 2.1 * fw
        cover = max(width / cw, height / ch)
        contain = min(width / cw, height / ch)
        fits = min(width / head_w, height / head_h)
        s = max(contain, min(cover, fits))
        # multiples of 8: swscale is 6x slower at odd widths, and its YUV scaling leaves
        # the last columns black at widths that are not a multiple of 8
        sw, sh = max(8, 8 * round(cw * s / 8)), max(8, 8 * round(ch * s / 8))
        s = sw / cw
        eyes_y = centre[1] - 0.12 * fw
        ox = (width - sw) / 2 if sw <= width else float(np.clip(width / 2 - s * centre[0], width - sw, 0))
        oy = (height - sh) / 2 if sh <= height else float(np.clip(0.40 * height - s * eyes_y, height - sh, 0))
        self.scale = s
        self.offset = (int(round(ox)), int(round(oy)))
        self.scaled = (sw, sh)
        self.size = (width, height)
        # canvas pixels that land inside the output, and where
        x0, y0 = self.offset
        self.dst = (slice(max(0, y0), min(height, y0 + sh)), slice(max(0, x0), min(width, x0 + sw)))
        self.src = (slice(max(0, -y0), max(0, -y0) + self.dst[0].stop - self.dst[0].start),
                    slice(max(0, -x0), max(0, -x0) + self.dst[1].stop - self.dst[1].start))
        self.background = np.zeros((height, width, 4), np.uint8)

    def extend(self, first: np.ndarray) -> None:
        """The output filled around the canvas by its edges, stretched and blurred: a flat
        background stays flat, and no scenery is invented."""
        out = self.extended(first)
        out[..., 3] = 255
        self.background = out

    def extended(self, scaled: np.ndarray) -> np.ndarray:
        """``scaled`` (the canvas at the layout's scale, any channels) placed in the output
        and extended past the canvas as ``extend`` does."""
        from PIL import ImageFilter

        w, h = self.size
        rows, cols = self.dst
        pad = ((rows.start, h - rows.stop), (cols.start, w - cols.stop)) + ((0, 0),) * (scaled.ndim - 2)
        out = np.ascontiguousarray(np.pad(scaled[self.src], pad, mode="edge"))
        if any(p for side in pad[:2] for p in side):
            keep: np.ndarray = np.zeros((h, w), np.uint8)  # then float32 weights
            keep[self.dst] = 255
            keep = np.asarray(Image.fromarray(keep).filter(ImageFilter.GaussianBlur(4)), np.float32) / 255
            radius = max(8, min(w, h) // 12)
            planes = [out] if out.ndim == 2 else [out[..., c] for c in range(min(3, out.shape[2]))]
            for plane in planes:
                soft = np.asarray(Image.fromarray(plane).filter(ImageFilter.GaussianBlur(radius)), np.float32)
                plane[...] = (plane * keep + soft * (1 - keep) + 0.5).astype(np.uint8)
        return out


class LoopPlayer:
    """Decodes one loop file's frames on demand; seeks by restarting at a key frame."""

    def __init__(self, loop: Loop, layout: Layout) -> None:
        import av

        self.loop = loop
        self._ctx = av.CodecContext.create("h264", "r")
        if loop.extradata:
            self._ctx.extradata = loop.extradata
        self._ctx.thread_count = 1  # frame threads would hold frames back
        self._packet = av.Packet
        self._next = 0
        self._index = -1
        self._frame: np.ndarray | None = None  # frame _index as RGBA
        self._size = layout.scaled

    def rgba(self, i: int) -> np.ndarray:
        """Frame ``i`` of the loop (wrapping), scaled to the layout, as RGBA."""
        n = self.loop.frames
        i %= n
        if i != self._index:
            if i < self._next - 1 or i - self._next >= KEY_INTERVAL or self._frame is None and i % KEY_INTERVAL:
                self._ctx.flush_buffers()
                self._next = i - i % KEY_INTERVAL
            frame: av.VideoFrame | None = None
            while self._next <= i:
                for out in self._ctx.decode(self._packet(self.loop.packets[self._next])):
                    frame = out
                self._next += 1
            if frame is None:
                raise RuntimeError(f"loop {self.loop.file} did not decode frame {i}")
            if (frame.width, frame.height) != self._size:  # scale in YUV: a quarter of the samples
                frame = frame.reformat(width=self._size[0], height=self._size[1], interpolation="BICUBIC")
            rgba = frame.to_ndarray(format="rgba")
            self._frame = rgba
            self._index = i
            return rgba
        assert self._frame is not None  # _index >= 0: a frame was decoded
        return self._frame
