"""Write the committed test vectors of a shipped card's entropy tables, once per new card:
eb-<k>/1 and ebc-<k>/1 payloads of a fixed tensor, and the temporal context codecs' payloads of
three sequence frames (test/core/{entropy,context,temporal_context}_vector_<card>.json). They
pin the card's tables and the coder across machines; the tests check that every machine decodes
them bit for bit and re-encodes the same bytes. The inputs are taken from earlier vectors (the
split tensor of a test frame; three sequence frames), so only the tables differ. Made for
models/default (2026-12-07) with the inputs of the removed default_eb / default_ebct vectors
(git show 32235e5:test/core/entropy_vector_default_eb.json, ...):

    PYTHONPATH=. python bench/entropy/shipped_vectors.py --model models/default \\
        --inputs-from <a folder with those two files> --out test/core
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

import numpy as np

from mtl_split_core.codec import EncodedTensor, decode, encode
from mtl_split_core.entropy_tables import tables_of
from mtl_split_core.temporal_codec import TemporalDecoder, TemporalEncoder

NEVER = "they pin the shipped tables and the coder across machines. Never regenerate."


def _sha(x: np.ndarray) -> str:
    return hashlib.sha256(x.astype("<f4").tobytes()).hexdigest()


def _per_frame(card: dict, folder: str, family: str, y: np.ndarray, about: str) -> dict:
    tables = tables_of(card["entropy"])
    empty = np.zeros(0, np.float32)
    cases = []
    for k in range(len(tables.points)):
        codec = f"{family}-{k}/1"
        data = encode(y, codec, tables=tables).data
        decoded = decode(EncodedTensor(codec, y.shape, empty, empty, data), tables=tables)
        cases.append({"codec": codec, "payload_hex": data.hex(),
                      "decoded_f32_le_sha256": _sha(decoded)})
    return {"about": about, "model": folder, "fingerprint": card["fingerprint"],
            "shape": list(y.shape), "input_f32_le_hex": y.astype("<f4").tobytes().hex(),
            "cases": cases}


def _temporal(card: dict, folder: str, xs: list[np.ndarray], codecs: list[str], about: str
              ) -> dict:
    tables = tables_of(card["entropy"])
    cases = []
    for codec in codecs:
        enc, dec = TemporalEncoder(codec, tables), TemporalDecoder()
        encs = [enc.encode(x) for x in xs]
        cases.append({"codec": codec, "payloads_hex": [e.data.hex() for e in encs],
                      "decoded_f32_le_sha256": [_sha(dec.decode(e, tables=tables))
                                                for e in encs]})
    return {"about": about, "model": folder, "fingerprint": card["fingerprint"],
            "shape": list(xs[0].shape),
            "inputs_f32_le_hex": [x.astype("<f4").tobytes().hex() for x in xs], "cases": cases}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="models/default", help="the card's folder (repo-relative)")
    ap.add_argument("--inputs-from", type=Path, required=True,
                    help="folder with the earlier vectors whose inputs are reused")
    ap.add_argument("--out", type=Path, default=Path("test/core"))
    args = ap.parse_args()
    card = json.loads((Path(args.model) / "card.json").read_text())
    old = {name: json.loads((args.inputs_from / name).read_text()) for name in (
        "entropy_vector_default_eb.json", "temporal_context_vector_default_ebct.json")}
    still = old["entropy_vector_default_eb.json"]
    y = np.frombuffer(bytes.fromhex(still["input_f32_le_hex"]), "<f4").reshape(still["shape"])
    seq = old["temporal_context_vector_default_ebct.json"]
    xs = [np.frombuffer(bytes.fromhex(h), "<f4").reshape(seq["shape"])
          for h in seq["inputs_f32_le_hex"]]
    name = Path(args.model).name
    vectors = {
        f"entropy_vector_{name}.json": _per_frame(
            card, args.model, "eb", y, f"Committed payloads of {args.model}'s tables (eb-<k>/1) "
            f"for a fixed tensor: {NEVER}"),
        f"context_vector_{name}.json": _per_frame(
            card, args.model, "ebc", y, f"Committed payloads of {args.model}'s context tables "
            f"(ebc-<k>/1) for the tensor of entropy_vector_{name}.json: {NEVER}"),
        f"temporal_context_vector_{name}.json": _temporal(
            card, args.model, xs, [c["codec"] for c in seq["cases"]],
            f"Committed payloads of {args.model}'s temporal context tables (t30-c<H>-ebc-3/1) "
            "for the split tensors of the first 3 frames of bench/rate_accuracy.py's sequences "
            f"(seed 23): {NEVER}"),
    }
    for file, vector in vectors.items():
        (args.out / file).write_text(json.dumps(vector, indent=1) + "\n")
        print(f"wrote {args.out / file}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
