"""After a fine-tune (no pytest on the GPU machine): is the base model's default split still
the base's, bit for bit? Prints one line ``FROZEN_SPLIT {json}``: how many of the base's
stored tensors (weights and batch-norm statistics) the tuned model changed, and whether its
outputs at the base's default split equal the base's on a few fixed images (CPU, float32, so
the comparison is exact). Exit 0 either way: a recipe that trains the shared layers is
expected to change them; the line says by how much.

    python3 bench/gpu/check_frozen_split.py models/default runs/TAG/model
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root
from mtl_split_core.model import load_model  # noqa: E402


def main(base_path: str, tuned_path: str) -> dict:
    base, _ = load_model(base_path)
    tuned, card = load_model(tuned_path)
    split = base.config.default_split
    tuned_state = tuned.state_dict()
    changed = sorted(k for k, v in base.state_dict().items()
                     if k not in tuned_state or not torch.equal(tuned_state[k], v))
    w, h = base.config.input_size
    x = torch.rand(4, 3, h, w, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        a, b = base(x, split), tuned(x, split)
    return {"model": tuned_path, "fingerprint": card["fingerprint"], "split": split,
            "base_tensors": len(base.state_dict()), "changed_tensors": len(changed),
            "changed_first": changed[:5],
            "outputs_equal": a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a),
            "per_split_heads": card.get("per_split_heads", []),
            "per_split_server": card.get("per_split_server", [])}


if __name__ == "__main__":
    if len(sys.argv) != 3:
        print("usage: " + __doc__.strip().splitlines()[-1].strip(), file=sys.stderr)
        sys.exit(2)
    print("FROZEN_SPLIT " + json.dumps(main(sys.argv[1], sys.argv[2])), flush=True)
