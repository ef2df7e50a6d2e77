"""What the edge sends the server for one frame, besides the image header and camera_info."""

from __future__ import annotations

from dataclasses import dataclass

from mtl_split_core.codec import EncodedTensor


@dataclass(frozen=True)
class FeaturePacket:
    tensor: EncodedTensor                       # the encoded split tensor
    model_id: str                               # model card name
    model_fingerprint: str                      # weights + split config hash
    split_index: int                            # index into the card's split points
    source_size: tuple[int, int]                # (width, height) of the camera image
    transform: tuple[float, float, float, float]  # model_px = source_px * scale + offset
    edge_ms: float = 0.0                        # edge preprocess + prefix + encode time

    @property
    def nbytes(self) -> int:
        """Bytes of the tensor on the wire: payload + per-channel scale/offset."""
        return self.tensor.nbytes
