"""On CUDA: a model's edge and server in fp16, eager against CUDA graphs, on real frames.

Why: a new backbone (e.g. the anti-aliased one's blur buffers) must capture into a CUDA graph
and give the eager path's outputs; the CPU tests cannot see that. Prints one line per model and
exits 1 when the codes or outputs differ beyond fp16 noise.
Usage (repository root, PYTHONPATH=.): python3 bench/gpu/check_cuda_graphs.py MODEL [SHARDS]
"""
from __future__ import annotations

import sys

import numpy as np
import torch

from mtl_split_core.codec import decode
from mtl_split_core.model import load_model
from mtl_split_core.runtime.edge import EdgeRunner
from mtl_split_core.runtime.server import ServerRunner


def frames(shards: str | None, n: int = 8) -> list[np.ndarray]:
    """``n`` frames of the shards (RGB uint8), else seeded noise at 640x480."""
    if shards is None:
        rng = np.random.default_rng(0)
        return [rng.integers(0, 256, (480, 640, 3), dtype=np.uint8) for _ in range(n)]
    from pathlib import Path

    from mtl_split_core.data.shards import ShardReader
    found = sorted(Path(shards).glob("shard_*.npz"))
    if not found:
        raise FileNotFoundError(f"no shard_*.npz in {shards}")
    reader = ShardReader(found[0], splits=("train", "val", "test"))
    return [reader.frame(i).image for i in range(n)]


def main() -> int:
    if len(sys.argv) not in (2, 3):
        print("usage: check_cuda_graphs.py MODEL [SHARDS]", file=sys.stderr)
        return 2
    if not torch.cuda.is_available():
        print("check_cuda_graphs.py: error: needs a CUDA device", file=sys.stderr)
        return 2
    try:
        model, card = load_model(sys.argv[1])
        images = frames(sys.argv[2] if len(sys.argv) == 3 else None)
    except (ValueError, OSError) as err:  # the model loader's errors; no shards
        print(f"check_cuda_graphs.py: error: {err}", file=sys.stderr)
        return 2
    runs = {}
    for graphs in (False, True):
        edge = EdgeRunner(model, card, device="cuda", precision="fp16", cuda_graphs=graphs)
        server = ServerRunner(model, card, device="cuda", precision="fp16", cuda_graphs=graphs)
        packets = [edge(img) for img in images]
        runs[graphs] = [(decode(p.tensor), server(p)) for p in packets]
    code_diff = max(float(np.abs(a[0].astype(np.float32) - b[0].astype(np.float32)).max())
                    for a, b in zip(runs[False], runs[True]))
    seg_agree = float(np.mean([np.mean(a[1].segmentation == b[1].segmentation)
                               for a, b in zip(runs[False], runs[True])]))
    # Each path's own packets through each path's server: differences are the edge's and the
    # server's together. fp16 rounding may move a value across a quantization boundary (one
    # q4 step of a channel: ~0.7 in the decoded tensor of the default's recipe) and flip a few
    # pixels' labels; a capture that went wrong differs by far more.
    ok = code_diff <= 1.0 and seg_agree >= 0.99
    print(f"{torch.cuda.get_device_name(0)} {card['backbone']} {card.get('fingerprint')}: "
          f"decoded split tensors eager vs graphs max |diff| {code_diff:g}, segmentation "
          f"labels agree {seg_agree:.4f} over {len(images)} frames: {'ok' if ok else 'DIFFER'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
