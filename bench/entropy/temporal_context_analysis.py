"""Can temporal context coding pay? Ideal code lengths of eb-k symbols on 30 fps sim sequences
under (a) ebc-k's spatial context tables (the card's), (b) tables conditioned on the previous
frame's co-located symbol, (c) both, and richer temporal variants; plus how much of a frame
changes from one frame to the next (camera motion).

Tables of (b)/(c) are fitted (counts smoothed towards the channel's eb table, as
``model/context_fit.py`` does) on the sequences of a training seed and scored on the benchmark's
sequences (bench/rate_accuracy.py --parts sequences: seed 23, 3 x 50 frames), never on the
test frames. Keyframes every 30 frames are coded with ebc-k (no reference). Bits are ideal
(-log2 p); the real ANS stream adds ~8 bytes a frame.

    PYTHONPATH=. python bench/entropy/temporal_context_analysis.py --model models/default
"""

from __future__ import annotations

import argparse
import datetime
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench" / "rate_accuracy"))
import sim_frames  # noqa: E402

from mtl_split_core.context_tables import Features, pass_positions  # noqa: E402
from mtl_split_core.entropy_tables import PRECISION, tables_of  # noqa: E402
from mtl_split_core.runtime.model_files import load_model_param  # noqa: E402

SMOOTHING = 20.0


def split_tensors(model, tables, images: np.ndarray) -> np.ndarray:
    with torch.inference_mode():
        return torch.cat([model.edge(torch.from_numpy(images[i:i + 32]).permute(0, 3, 1, 2)
                                     .float() / 255.0, tables.split).float()
                          for i in range(0, len(images), 32)]).numpy()


def symbols(point, y: np.ndarray) -> np.ndarray:
    """(N, C, H, W) table indices."""
    n, c, h, w = y.shape
    flat = np.ascontiguousarray(y.transpose(1, 0, 2, 3)).reshape(c, -1)
    return point.symbols(flat).reshape(c, n, h, w).transpose(1, 0, 2, 3)


def ebc_contexts(cpoint, index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per symbol (N, C, H, W): the ebc context id and its ideal bits under the card's tables."""
    n, c, h, w = index.shape
    d = index.astype(np.int64) - cpoint.center[None, :, None, None]
    ctx = np.zeros(index.shape, np.int64)
    bits = np.zeros(index.shape, np.float64)
    for p, positions in enumerate(pass_positions(h, w)):
        for f in range(n):
            pred = Features(d[f], positions).predictions(cpoint.w[p])
            for ch in range(c):
                cell = cpoint.cells[p][ch]
                k = cell.contexts(pred[ch])
                sym = index[f, ch].ravel()[positions]
                freq = cell.weights[k, sym].astype(np.float64) + 1.0
                ctx[f, ch].reshape(-1)[positions] = k
                bits[f, ch].reshape(-1)[positions] = PRECISION - np.log2(freq)
    return ctx, bits


def keyframe_mask(groups: np.ndarray, interval: int) -> np.ndarray:
    """Which frames have no reference (first of a sequence, then every ``interval``)."""
    key = np.zeros(len(groups), bool)
    for g in np.unique(groups):
        idx = np.flatnonzero(groups == g)
        key[idx[::interval]] = True
    return key


def hold(point, y: np.ndarray, idx: np.ndarray, key: np.ndarray, margin: float) -> np.ndarray:
    """Symbols with temporal hysteresis: a frame keeps the previous frame's (held) symbol
    wherever the value is within 0.5 + ``margin`` quantization steps of it."""
    out = idx.copy()
    scaled = y * point.gain[None, :, None, None] - point.lo[None, :, None, None]
    for f in range(len(idx)):
        if not key[f]:
            keep = np.abs(scaled[f] - out[f - 1]) < 0.5 + margin
            out[f][keep] = out[f - 1][keep]
    return out


def fit_and_score(train_ctx: np.ndarray, train_sym: np.ndarray, test_ctx: np.ndarray,
                  test_sym: np.ndarray, base: list[np.ndarray]) -> np.ndarray:
    """Bits per test symbol under per-(channel, context) tables fitted on train. ``*_ctx``
    (n, C) int64 context ids, ``*_sym`` (n, C) symbols."""
    bits = np.zeros(test_sym.shape)
    for ch in range(train_sym.shape[1]):
        L = len(base[ch])
        nctx = int(max(train_ctx[:, ch].max(), test_ctx[:, ch].max())) + 1
        counts = np.zeros((nctx, L))
        np.add.at(counts, (train_ctx[:, ch], train_sym[:, ch]), 1.0)
        prior = base[ch] / base[ch].sum() * SMOOTHING
        p = (counts + prior) / (counts + prior).sum(1, keepdims=True)
        bits[:, ch] = -np.log2(p[test_ctx[:, ch], test_sym[:, ch]])
    return bits


def pairs(a: np.ndarray, key: np.ndarray) -> np.ndarray:
    """Frames with a reference (not keyframes)."""
    return np.flatnonzero(~key)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="models/default")
    ap.add_argument("--op", type=int, default=3)
    ap.add_argument("--train-seed", type=int, default=1)
    ap.add_argument("--train-sequences", type=int, default=6)
    ap.add_argument("--test-seed", type=int, default=23)
    ap.add_argument("--keyint", type=int, default=30)
    ap.add_argument("--hold", type=float, default=0.0,
                    help="encoder hysteresis: keep the previous frame's symbol while the value "
                    "is within 0.5 + HOLD steps of it (0: the eb symbols)")
    ap.add_argument("--cache", type=Path, default=ROOT / "data" / "rate_accuracy")
    args = ap.parse_args()
    model, card = load_model_param(args.model)
    tables = tables_of(model.config.entropy)
    point, cpoint = tables.points[args.op], tables.context[args.op]
    wh = tuple(model.config.input_size)
    c_ = tables.channels

    def load(seed: int, nseq: int):
        data = sim_frames.cached(args.cache, "sequences", seed, nseq * 50, 50, (640, 480), wh,
                                 0.0)
        y = split_tensors(model, tables, data["images"])
        idx = symbols(point, y)
        if args.hold:
            idx = hold(point, y, idx, keyframe_mask(data["group_of"], args.keyint), args.hold)
        err = (point.values(idx.transpose(1, 0, 2, 3).reshape(c_, -1)) -
               y.transpose(1, 0, 2, 3).reshape(c_, -1))
        print(f"seed {seed}: reconstruction MSE x gain^2 (eb: 1/12 = 0.083): "
              f"{float(np.mean((err * point.gain[:, None]) ** 2)):.3f}")
        return idx, data["group_of"]

    tr, tr_g = load(args.train_seed, args.train_sequences)
    te, te_g = load(args.test_seed, 3)
    n, c, h, w = te.shape
    print(f"model {card['name']} {card['fingerprint'][:16]}, op {args.op}, tensor {(c, h, w)}, "
          f"train {len(tr)} frames (seed {args.train_seed}), test {n} (seed {args.test_seed})")

    out = {}
    for name, idx, g in (("train", tr, tr_g), ("test", te, te_g)):
        ctx, bits = ebc_contexts(cpoint, idx)
        key = keyframe_mask(g, args.keyint)
        prev = np.roll(idx, 1, axis=0)      # frame t-1 (garbage at keyframes, masked)
        out[name] = dict(idx=idx, ctx=ctx, bits=bits, key=key, prev=prev)

    te_ = out["test"]
    key = te_["key"]
    delta = ~key
    bytes_ebc = te_["bits"].reshape(n, -1).sum(1) / 8
    print(f"(a) ebc-{args.op} ideal: {bytes_ebc.mean():.0f} B/frame over all test frames "
          f"(keyframes {bytes_ebc[key].mean():.0f}, others {bytes_ebc[delta].mean():.0f})")
    idx = te_["idx"]
    same = (idx[delta] == te_["prev"][delta])
    print(f"motion: symbols equal to the previous frame's co-located one: {same.mean():.3f}; "
          f"positions with every channel equal: {same.all(1).mean():.3f}")
    center = cpoint.center[None, :, None, None]
    print(f"symbols at the channel's center: {(idx == center).mean():.3f}")

    def flat_ch(a: np.ndarray, frames: np.ndarray) -> np.ndarray:
        return a[frames].transpose(0, 2, 3, 1).reshape(-1, c)

    tr_ = out["train"]
    trd, ted = np.flatnonzero(~tr_["key"]), np.flatnonzero(delta)
    L = max(len(f) for f in point.freqs)
    base = list(point.freqs)

    def run(label: str, feat):
        bits_delta = fit_and_score(flat_ch(feat(tr_), trd), flat_ch(tr_["idx"], trd),
                                   flat_ch(feat(te_), ted), flat_ch(te_["idx"], ted), base)
        per_delta = bits_delta.reshape(len(ted), -1).sum(1) / 8
        total = (bytes_ebc[key].sum() + per_delta.sum()) / n
        print(f"{label}: delta frames {per_delta.mean():.0f} B/frame, all frames (keyframes "
              f"ebc) {total:.0f} B/frame")
        return total

    # ebc's cells are per (pass, channel): make the ctx id unique per pass.
    def pass_of() -> np.ndarray:
        i, j = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
        return ((i + j) % 2)[None, None]

    def ebc_ctx(o):
        return o["ctx"] + 256 * pass_of()

    def prev_sym(o):
        return np.broadcast_to(o["prev"], o["idx"].shape).astype(np.int64)

    def prev_clip(o, r=3):
        return np.clip(o["prev"].astype(np.int64) - center, -r, r) + r

    def prev_nbhd(o):
        d = np.abs(o["prev"].astype(np.int64) - center)
        s = np.zeros_like(d)
        s[..., 1:, :] += d[..., :-1, :]
        s[..., :-1, :] += d[..., 1:, :]
        s[..., :, 1:] += d[..., :, :-1]
        s[..., :, :-1] += d[..., :, 1:]
        return np.minimum(s, 7)

    results = {"(a) ebc spatial (card)": float(bytes_ebc.mean())}
    results["(a') spatial ebc ctx refit on train seq"] = run("(a') ebc ctx, refit", ebc_ctx)
    results["(b) prev co-located symbol"] = run("(b) prev co-located", prev_sym)
    results["(b') prev clip +-3 x prev 4-nbhd |d| (<=7)"] = run(
        "(b') prev clip3 x nbhd", lambda o: prev_clip(o) * 8 + prev_nbhd(o))
    results["(c) ebc ctx x prev clip +-3"] = run(
        "(c) ebc ctx x prev clip3", lambda o: ebc_ctx(o) * 7 + prev_clip(o))
    results["(c') ebc ctx x prev clip +-1"] = run(
        "(c') ebc ctx x prev clip1", lambda o: ebc_ctx(o) * 3 + prev_clip(o, 1))

    def changes_before(o):
        """Per symbol: how many already decoded symbols near it differ from the reference
        (the earlier channels at its position; in pass 1 also every channel at its 4
        neighbours, all anchors), bucketed 0, 1, 2-3, 4+."""
        changed = (o["idx"] != o["prev"]).astype(np.int64)          # (N, C, H, W)
        earlier = np.cumsum(changed, axis=1) - changed               # channels before c
        nb = np.zeros_like(changed)
        nb[..., 1:, :] += changed[..., :-1, :]
        nb[..., :-1, :] += changed[..., 1:, :]
        nb[..., :, 1:] += changed[..., :, :-1]
        nb[..., :, :-1] += changed[..., :, 1:]
        k = earlier + pass_of() * nb.sum(1, keepdims=True)
        return np.digitize(k, [1, 2, 4])

    results["(d) ebc ctx x prev clip +-3 x changes already decoded nearby"] = run(
        "(d) ebc ctx x prev clip3 x changes", lambda o: (ebc_ctx(o) * 7 + prev_clip(o)) * 4
        + changes_before(o))

    def shifted_prev(o):
        """The reference shifted by the integer (dy, dx) in -1..1 that matches the most symbols
        of the frame (an encoder's global motion search; 1 byte a frame to send), edge
        positions repeated."""
        idx, prev = o["idx"], o["prev"]
        out = prev.copy()
        hh, ww = idx.shape[-2:]
        padded = np.pad(prev, ((0, 0), (0, 0), (1, 1), (1, 1)), mode="edge")
        for f in range(len(idx)):
            best = max(((dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)),
                       key=lambda s: (np.sum(padded[f, :, 1 + s[0]:1 + s[0] + hh,
                                                    1 + s[1]:1 + s[1] + ww] == idx[f]),
                                      s == (0, 0)))
            out[f] = padded[f, :, 1 + best[0]:1 + best[0] + hh, 1 + best[1]:1 + best[1] + ww]
        return out

    for o in (tr_, te_):
        o["prev_shifted"] = shifted_prev(o)
    results["(e) ebc ctx x motion-searched prev clip +-3 (+1 B/frame)"] = run(
        "(e) ebc ctx x shifted prev clip3 (add 1 B/frame)",
        lambda o: ebc_ctx(o) * 7 + prev_clip({"prev": o["prev_shifted"]}))
    # ceiling: in-sample (fit on the test frames themselves), not achievable
    bits_in = fit_and_score(flat_ch(ebc_ctx(te_) * 7 + prev_clip(te_), ted),
                            flat_ch(te_["idx"], ted),
                            flat_ch(ebc_ctx(te_) * 7 + prev_clip(te_), ted),
                            flat_ch(te_["idx"], ted), base)
    ceil = (bytes_ebc[key].sum() + bits_in.sum() / 8) / n
    print(f"ceiling (c) fitted on the test frames themselves: {ceil:.0f} B/frame")
    print(f"date {datetime.date.today()}; L max {L}")


if __name__ == "__main__":
    main()
