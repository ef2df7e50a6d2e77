"""Video codecs for the streaming baseline: a 30 fps sequence of model-input images coded as
one low-latency stream through PyAV (FFmpeg's libx264 / libx265), then decoded frame by frame.

Low-latency settings, as a robot streaming to a server would use: no B-frames (every frame is
sent as soon as it is coded), ``tune=zerolatency`` (no look-ahead, no frame delay), a fixed
keyframe (IDR) interval, constant-quality rate control (CRF) swept along the curve. Bytes per
frame are every packet's bytes (keyframes and parameter sets included) over the frame count.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np

FPS = 30
CRFS = (16, 20, 24, 28, 32, 38)  # accuracy falls off fast above ~30 at 320x240


@dataclass(frozen=True)
class VideoCodec:
    name: str
    encoder: str  # FFmpeg encoder name
    preset: str
    crfs: tuple[int, ...] = CRFS
    extra: dict[str, str] = field(default_factory=dict)

    def available(self) -> bool:
        try:
            import av  # here, not at the top: image-only runs need no FFmpeg
        except ImportError:
            return False
        try:
            av.codec.Codec(self.encoder, "w")
        except (av.error.FFmpegError, ValueError):  # unknown encoder in this FFmpeg build
            return False
        return True

    def options(self, crf: int, keyint: int) -> dict[str, str]:
        opts = {"preset": self.preset, "tune": "zerolatency", "crf": str(crf), "bf": "0",
                "g": str(keyint), "keyint_min": str(keyint), "sc_threshold": "0"}
        if self.encoder == "libx265":  # x265 takes its GOP settings through x265-params
            opts["x265-params"] = (f"keyint={keyint}:min-keyint={keyint}:bframes=0:"
                                   f"scenecut=0:info=0:log-level=error")
        return {**opts, **self.extra}

    def settings(self, keyint: int) -> str:
        """The encoder settings in words, for the results."""
        return (f"{self.encoder} preset {self.preset}, tune zerolatency, no B-frames, "
                f"keyframe every {keyint} frames ({keyint / FPS:.2f} s), CRF sweep, yuv420p, "
                f"{FPS} fps")

    def code(self, frames: np.ndarray, crf: int, keyint: int
             ) -> tuple[np.ndarray, list[int], list[int]]:
        """(N, H, W, 3) uint8 RGB -> (decoded frames, bytes of each frame's packets, indexes
        of the keyframes)."""
        import av

        n, h, w = frames.shape[:3]
        enc = av.CodecContext.create(self.encoder, "w")
        enc.width, enc.height, enc.pix_fmt = w, h, "yuv420p"
        enc.time_base, enc.framerate = Fraction(1, FPS), Fraction(FPS, 1)
        enc.options = self.options(crf, keyint)
        enc.open()
        packets: list = []
        for i, rgb in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
            frame.pts = i
            packets += enc.encode(frame.reformat(format="yuv420p"))
        packets += enc.encode(None)  # flush (zerolatency: nothing is held back, but be sure)
        sizes = [0] * n
        for p in packets:
            sizes[int(p.pts)] += p.size
        keyframes = sorted({int(p.pts) for p in packets if p.is_keyframe})
        dec = av.CodecContext.create(self.encoder.removeprefix("lib").replace("x264", "h264")
                                     .replace("x265", "hevc"), "r")
        decoded = [f.to_ndarray(format="rgb24") for p in packets for f in dec.decode(p)]
        decoded += [f.to_ndarray(format="rgb24") for f in dec.decode(None)]
        if len(decoded) != n:
            raise RuntimeError(f"{self.name} CRF {crf}: {len(decoded)} frames decoded of {n}")
        return np.stack(decoded), sizes, keyframes


VIDEO_CODECS: dict[str, VideoCodec] = {c.name: c for c in (
    VideoCodec("h264", "libx264", "medium"),
    VideoCodec("h265", "libx265", "medium"),
)}


def available_codecs(names: list[str] | None = None) -> dict[str, VideoCodec]:
    chosen = VIDEO_CODECS if names is None else {n: VIDEO_CODECS[n] for n in names}
    return {n: c for n, c in chosen.items() if c.available()}
