"""Can sub-position motion compensation of the reference pay? Ideal code lengths of eb-k symbols
on 30 fps sim sequences when the conditioning symbol (and the encoder's hold reference) is the
previous decoded frame WARPED by a motion the encoder chooses and sends, instead of its
co-located symbol (row (c) of bench/results/temporal_context_analysis.md).

The warp is integer fixed point (bit-exact on every machine, as a codec would need): sample
positions in 1/64 of a tensor position, bilinear weights in 1/64, the reference's table indices
interpolated and rounded to the nearest index (the predicted symbol). Predictors:

- global shift: one (dy, dx) per frame in quarter positions, -2..2 (289 choices, 1.02 B sent);
- global shift + zoom about the tensor's centre (the camera moves forward/back): zoom in
  {-4, -2, 0, 2, 4}/64 per frame (1445 choices, 1.31 B sent);
- block vectors: a quarter-position shift in -2..2 per 5 x 5 block (3 x 4 blocks, 12 x 8.2
  bits = 12.3 B sent);
- oracle, per position: every position's own best shift (its 16 channels share it), sent free:
  an upper bound of any quarter-position motion field within -2..2;
- oracle, true camera motion: each position's displacement from the sim's depth of the current
  frame and the two camera poses (the exact geometric flow, averaged over the 16 x 16 pixels a
  position sees), sent free; also rounded to whole positions (no interpolation blur).

The encoder's choice (all but the true-motion oracle): the motion whose predicted symbols match
the most of the frame's plain eb symbols (ties: the smaller motion). Contexts: the predicted
symbol clipped to center +-3 (as row (c) clips the co-located one), optionally at half-symbol
resolution (the interpolation's fraction) or combined with the co-located symbol. Tables fitted
on the training-seed sequences, scored on the benchmark's seed-23 sequences, like
temporal_context_analysis.py (whose helpers this reuses).

    PYTHONPATH=. python bench/entropy/temporal_mc_analysis.py --model models/default
"""

from __future__ import annotations

import argparse
import datetime
import math
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench" / "rate_accuracy"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import sim_frames  # noqa: E402
import temporal_context_analysis as tca  # noqa: E402

from mtl_split_core.entropy_tables import tables_of  # noqa: E402
from mtl_split_core.runtime.model_files import load_model_param  # noqa: E402

ONE = 64                     # fixed point: 1/64 of a tensor position
SHIFTS = np.arange(-8, 9)    # quarter positions, -2..2
ZOOMS = (-4, -2, 0, 2, 4)    # /64 per frame
BLOCK = 5


def warp(ref: np.ndarray, qy: np.ndarray, qx: np.ndarray, half: bool = False) -> np.ndarray:
    """Bilinear integer warp of table indices ``ref`` (C, H, W) sampled at positions ``qy``,
    ``qx`` (H, W) int64 in 1/64 positions (clamped to the grid), rounded to the nearest index
    (``half``: to the nearest half index, times 2)."""
    c, h, w = ref.shape
    qy = np.clip(qy, 0, (h - 1) * ONE)
    qx = np.clip(qx, 0, (w - 1) * ONE)
    y0, fy = qy // ONE, qy % ONE
    x0, fx = qx // ONE, qx % ONE
    y1, x1 = np.minimum(y0 + 1, h - 1), np.minimum(x0 + 1, w - 1)
    r = ref.astype(np.int64)
    s = ((ONE - fy) * (ONE - fx) * r[:, y0, x0] + (ONE - fy) * fx * r[:, y0, x1]
         + fy * (ONE - fx) * r[:, y1, x0] + fy * fx * r[:, y1, x1])
    if half:
        return (2 * s + ONE * ONE // 2) // (ONE * ONE)
    return (s + ONE * ONE // 2) // (ONE * ONE)


def grid(h: int, w: int, dy: int, dx: int, zoom: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Sample positions (1/64) of a global shift (dy, dx quarter positions) and zoom (/64)
    about the grid's centre."""
    i, j = np.meshgrid(np.arange(h) * ONE, np.arange(w) * ONE, indexing="ij")
    cy, cx = (h - 1) * ONE // 2, (w - 1) * ONE // 2
    qy = cy + (i - cy) * (ONE + zoom) // ONE + dy * ONE // 4
    qx = cx + (j - cx) * (ONE + zoom) // ONE + dx * ONE // 4
    return qy, qx


def best_global(ref: np.ndarray, cur: np.ndarray, zooms) -> tuple[np.ndarray, np.ndarray]:
    """The global motion whose prediction matches the most of ``cur`` -> its sample grid."""
    h, w = ref.shape[1:]
    best = None
    for z in zooms:
        for dy in SHIFTS:
            for dx in SHIFTS:
                q = grid(h, w, int(dy), int(dx), z)
                score = (int((warp(ref, *q) == cur).sum()), -abs(dy) - abs(dx) - abs(z))
                if best is None or score > best[0]:
                    best = (score, q)
    return best[1]


def per_region(ref: np.ndarray, cur: np.ndarray, block: int) -> tuple[np.ndarray, np.ndarray]:
    """Per block x block region (1: per position), the shift matching the most symbols."""
    h, w = ref.shape[1:]
    cands = [(int(dy), int(dx)) for dy in SHIFTS for dx in SHIFTS]
    match = np.stack([(warp(ref, *grid(h, w, dy, dx)) == cur).sum(0) for dy, dx in cands])
    cost = np.stack([abs(dy) + abs(dx) for dy, dx in cands])
    qy, qx = grid(h, w, 0, 0)
    for bi in range(0, h, block):
        for bj in range(0, w, block):
            m = match[:, bi:bi + block, bj:bj + block].sum((1, 2)) * 100 - cost
            dy, dx = cands[int(m.argmax())]
            qy[bi:bi + block, bj:bj + block] += dy * ONE // 4
            qx[bi:bi + block, bj:bj + block] += dx * ONE // 4
    return qy, qx


# ------------------------------------------------------------- true camera motion (oracle)

def camera_poses(seed: int, nseq: int, count: int) -> list[list[tuple]]:
    """The poses sim_frames.render used for each sequence (same scene seeds, same draws)."""
    from mtl_split_core.data.sim_sequences import poses_at_fps
    from mtl_split_core.sim.scene import SimScene
    from mtl_split_core.sim.trajectory import Trajectory
    out = []
    for g in range(nseq):
        with SimScene(sim_frames.scene_seed(seed, sim_frames.SEQUENCE_SCENE_OFFSET + g),
                      640, 480) as scene:
            scene.camera()  # the lens draw render() makes first
            out.append(list(poses_at_fps(Trajectory(scene), count)))
    return out


def cam_axes(pose) -> tuple[np.ndarray, np.ndarray]:
    """World position and (right, down, forward) rows of a pose (x, y, z, yaw, pitch)."""
    x, y, z, yaw, pitch = pose
    fwd = np.array([math.cos(pitch) * math.cos(yaw), math.cos(pitch) * math.sin(yaw),
                    math.sin(pitch)])
    right = np.array([math.sin(yaw), -math.cos(yaw), 0.0])
    down = np.cross(fwd, right)
    return np.array([x, y, z]), np.stack([right, down, fwd])


def true_flow(depth: np.ndarray, k: np.ndarray, pose_now, pose_prev, stride: int
              ) -> tuple[np.ndarray, np.ndarray]:
    """Per split-tensor position, where its pixels were in the previous frame (1/64 positions):
    back-project the current frame's pixels with their depth (distance along the optical axis),
    move them into the previous camera, project; mean over the position's valid pixels."""
    h, w = depth.shape
    kk = k.reshape(3, 3)
    v, u = np.meshgrid(np.arange(h, dtype=np.float64), np.arange(w, dtype=np.float64),
                       indexing="ij")  # pixel centres at integers (sim/camera.py)
    z = depth.astype(np.float64)
    ray = np.stack([(u - kk[0, 2]) / kk[0, 0], (v - kk[1, 2]) / kk[1, 1], np.ones_like(u)])
    p_cam = ray * z
    c1, r1 = cam_axes(pose_now)
    c0, r0 = cam_axes(pose_prev)
    world = np.einsum("ij,ihw->jhw", r1, p_cam) + c1[:, None, None]
    p0 = np.einsum("ij,jhw->ihw", r0, world - c0[:, None, None])
    u0 = kk[0, 0] * p0[0] / p0[2] + kk[0, 2]
    v0 = kk[1, 1] * p0[1] / p0[2] + kk[1, 2]
    valid = (z > 0) & (p0[2] > 0.05)
    th, tw = h // stride, w // stride
    du = np.where(valid, u0 - u, 0.0).reshape(th, stride, tw, stride)
    dv = np.where(valid, v0 - v, 0.0).reshape(th, stride, tw, stride)
    n = np.maximum(valid.reshape(th, stride, tw, stride).sum((1, 3)), 1)
    qy, qx = grid(th, tw, 0, 0)
    qy = qy + np.round(dv.sum((1, 3)) / n / stride * ONE).astype(np.int64)
    qx = qx + np.round(du.sum((1, 3)) / n / stride * ONE).astype(np.int64)
    return qy, qx


def flow_stats(args: argparse.Namespace) -> None:
    """How far the test sequences' positions move between frames under the true flow (the
    default models' 320 x 240 input, split at stride 16)."""
    data = sim_frames.cached(args.cache, "sequences", args.test_seed, 150, 50, (640, 480),
                             (320, 240), 0.0)
    poses = [p for seq in camera_poses(args.test_seed, 3, 50) for p in seq]
    key = tca.keyframe_mask(data["group_of"], args.keyint)
    q0 = grid(240 // 16, 320 // 16, 0, 0)
    moves = np.stack([np.maximum(*(np.abs(q - z) for q, z in zip(
        true_flow(data["depth"][t], data["k"][t], poses[t], poses[t - 1], 16), q0))) / ONE
        for t in range(len(key)) if not key[t]])
    print("true flow per frame, max(|dy|, |dx|) in positions: share below 0.25 / 0.5 / 1: "
          + " / ".join(f"{(moves < x).mean():.3f}" for x in (0.25, 0.5, 1.0))
          + f"; median {np.median(moves):.3f}, mean {moves.mean():.3f}, "
          f"p90 {np.percentile(moves, 90):.2f}")


# ------------------------------------------------------------------------------ main

def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="models/default")
    ap.add_argument("--op", type=int, default=3)
    ap.add_argument("--train-seed", type=int, default=1)
    ap.add_argument("--train-sequences", type=int, default=6)
    ap.add_argument("--test-seed", type=int, default=23)
    ap.add_argument("--keyint", type=int, default=30)
    ap.add_argument("--holds", default="0,0.25,0.5")
    ap.add_argument("--kinds",
                    default="coloc,shift,zoom,block,oracle-pos,oracle-true,oracle-true-int",
                    help="predictors to score (module docstring)")
    ap.add_argument("--cache", type=Path, default=ROOT / "data" / "rate_accuracy")
    ap.add_argument("--flow-stats", action="store_true",
                    help="only print how far the test positions move per frame (true flow)")
    args = ap.parse_args()
    if args.flow_stats:
        flow_stats(args)
        return
    t_start = time.time()
    model, card = load_model_param(args.model)
    tables = tables_of(model.config.entropy)
    point, cpoint = tables.points[args.op], tables.context[args.op]
    wh = tuple(model.config.input_size)
    center = cpoint.center[None, :, None, None]

    sets = {}
    for name, seed, nseq in (("train", args.train_seed, args.train_sequences),
                             ("test", args.test_seed, 3)):
        data = sim_frames.cached(args.cache, "sequences", seed, nseq * 50, 50, (640, 480), wh,
                                 0.0)
        y = tca.split_tensors(model, tables, data["images"])
        key = tca.keyframe_mask(data["group_of"], args.keyint)
        stride = wh[0] // y.shape[-1]
        flows = None
        if "oracle-true" in args.kinds:
            poses = [p for seq in camera_poses(seed, nseq, 50) for p in seq]
            flows = [None if key[t] else true_flow(data["depth"][t], data["k"][t], poses[t],
                                                   poses[t - 1], stride)
                     for t in range(len(y))]
        sets[name] = dict(y=y, key=key, plain=tca.symbols(point, y), flows=flows)
    n, c, h, w = sets["test"]["y"].shape
    print(f"model {card['name']} {card['fingerprint'][:16]}, op {args.op}, tensor {(c, h, w)}, "
          f"train {len(sets['train']['y'])} frames, test {n}; {time.time() - t_start:.0f} s")

    def motion(kind: str):
        """(ref, cur plain symbols, set, frame) -> sample grid of the predictor."""
        if kind == "coloc":
            return lambda ref, cur, s, t: grid(h, w, 0, 0)
        if kind == "shift":
            return lambda ref, cur, s, t: best_global(ref, cur, (0,))
        if kind == "zoom":
            return lambda ref, cur, s, t: best_global(ref, cur, ZOOMS)
        if kind == "block":
            return lambda ref, cur, s, t: per_region(ref, cur, BLOCK)
        if kind == "oracle-pos":
            return lambda ref, cur, s, t: per_region(ref, cur, 1)
        if kind == "oracle-true":
            return lambda ref, cur, s, t: s["flows"][t]
        if kind == "oracle-true-int":  # the true flow rounded to whole positions: no blur
            return lambda ref, cur, s, t: tuple((q + ONE // 2) // ONE * ONE
                                                for q in s["flows"][t])
        raise ValueError(kind)

    side = {"coloc": 0.0, "shift": math.log2(len(SHIFTS) ** 2) / 8,
            "zoom": math.log2(len(SHIFTS) ** 2 * len(ZOOMS)) / 8,
            "block": math.log2(len(SHIFTS) ** 2) * math.ceil(h / BLOCK) * math.ceil(w / BLOCK) / 8,
            "oracle-pos": 0.0, "oracle-true": 0.0, "oracle-true-int": 0.0}

    def code(s: dict, kind: str, hold: float) -> dict:
        """The encoder's symbols, predicted symbols (and at half resolution), co-located
        reference of every frame of set ``s`` under predictor ``kind`` and ``hold``."""
        pick = motion(kind)
        y, key, plain = s["y"], s["key"], s["plain"]
        scaled = y * point.gain[None, :, None, None] - point.lo[None, :, None, None]
        idx = plain.copy()
        pred = np.zeros_like(idx, dtype=np.int64)
        pred2 = np.zeros_like(pred)
        coloc = np.zeros_like(pred)
        coloc2 = np.zeros_like(pred)  # the frame before the reference (itself after a key)
        match, fields = [], []
        q0 = grid(h, w, 0, 0)
        for t in range(len(y)):
            if key[t]:
                continue
            ref = idx[t - 1]
            q = pick(ref, plain[t], s, t)
            fields.append(np.stack([q[0] - q0[0], q[1] - q0[1]]))
            pred[t], pred2[t], coloc[t] = warp(ref, *q), warp(ref, *q, half=True), ref
            coloc2[t] = ref if key[t - 1] else idx[t - 2]
            if hold:
                keep = np.abs(scaled[t] - pred[t]) < 0.5 + hold
                idx[t] = np.where(keep, pred[t], plain[t])
            match.append(float((pred[t] == idx[t]).mean()))
        # Zero-order entropy of the motion field's per-position vectors, fitted on these very
        # frames (optimistic): what sending a free oracle's field would cost at least.
        vec = np.stack(fields).transpose(0, 2, 3, 1).reshape(-1, 2)
        _, counts = np.unique(vec, axis=0, return_counts=True)
        p = counts / counts.sum()
        field_bytes = float(-(p * np.log2(p)).sum()) * h * w / 8
        mse = float(np.mean((scaled - idx) ** 2))  # in squared quantization steps
        return dict(idx=idx, pred=pred, pred2=pred2, coloc=coloc, coloc2=coloc2, key=key,
                    match=float(np.mean(match)), field_bytes=field_bytes, mse=mse)

    def clip(a: np.ndarray, r: int = 3) -> np.ndarray:
        return np.clip(a - center, -r, r) + r

    def pass_of() -> np.ndarray:
        i, j = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
        return ((i + j) % 2)[None, None]

    contexts = {
        "pred": (lambda o: clip(o["pred"]), 7),
        "pred-half": (lambda o: np.clip(o["pred2"] - 2 * center, -6, 6) + 6, 13),
        "pred x coloc<=>": (lambda o: clip(o["pred"]) * 3 + np.sign(o["coloc"] - o["pred"]) + 1,
                            21),
        "pred x trend": (lambda o: clip(o["pred"]) * 3 + np.sign(o["coloc"] - o["coloc2"]) + 1,
                         21),
    }
    base = list(point.freqs)
    ctx_cache: dict[bytes, np.ndarray] = {}

    def ebc_ctx(o: dict) -> np.ndarray:
        k = o["idx"].tobytes()
        if k not in ctx_cache:
            ctx_cache[k] = tca.ebc_contexts(cpoint, o["idx"])[0] + 256 * pass_of()
        return ctx_cache[k]

    ebc_bits = tca.ebc_contexts(cpoint, sets["test"]["plain"])[1].reshape(n, -1).sum(1) / 8
    key_bytes = ebc_bits[sets["test"]["key"]].sum()

    def score(tr: dict, te: dict, feat, span: int, sidebytes: float, in_sample=False) -> float:
        def flat(o, a):
            frames = np.flatnonzero(~o["key"])
            return a[frames].transpose(0, 2, 3, 1).reshape(-1, c), frames
        fit = te if in_sample else tr
        (cx_tr, _), (sy_tr, _) = flat(fit, ebc_ctx(fit) * span + feat(fit)), flat(fit, fit["idx"])
        (cx_te, fr), (sy_te, _) = flat(te, ebc_ctx(te) * span + feat(te)), flat(te, te["idx"])
        bits = tca.fit_and_score(cx_tr, sy_tr, cx_te, sy_te, base)
        return float((key_bytes + bits.sum() / 8 + sidebytes * len(fr)) / n)

    holds = [float(x) for x in args.holds.split(",")]
    kinds = args.kinds.split(",")
    rows: dict[tuple[str, str], dict[float, float]] = {}
    for hold in holds:
        for kind in kinds:
            tr, te = code(sets["train"], kind, hold), code(sets["test"], kind, hold)
            print(f"hold {hold} {kind}: predicted symbol == coded symbol on "
                  f"{te['match']:.3f} of the test delta symbols; its motion field's zero-order "
                  f"entropy {te['field_bytes']:.1f} B/frame ({time.time() - t_start:.0f} s)")
            rows.setdefault((kind, "match"), {})[hold] = te["match"]
            rows.setdefault((kind, "field entropy B"), {})[hold] = te["field_bytes"]
            rows.setdefault((kind, "MSE x gain^2"), {})[hold] = te["mse"]
            for cname, (feat, span) in contexts.items():
                if (kind == "coloc") != (cname in ("pred", "pred x trend")) and cname != "pred":
                    continue  # the co-located reference: no fraction, no second reference
                b = score(tr, te, feat, span, side[kind])
                rows.setdefault((kind, cname), {})[hold] = b
                print(f"  ctx ebc x {cname}: {b:.1f} B/frame (side {side[kind]:.2f} B/delta)")
            if kind in ("coloc", "shift"):
                b = score(tr, te, contexts["pred"][0], 7, side[kind], in_sample=True)
                rows.setdefault((kind, "pred in-sample"), {})[hold] = b
                print(f"  in-sample ceiling ebc x pred: {b:.1f} B/frame")
    print("\n| predictor | context | " + " | ".join(f"hold {x:g}" for x in holds) + " |")
    print("|---|---|" + "---:|" * len(holds))
    for (kind, cname), vals in rows.items():
        fmt = "{:.3f}" if cname in ("match", "MSE x gain^2") else "{:.0f}"
        print(f"| {kind} | {cname} | " + " | ".join(fmt.format(vals[x]) if x in vals else ""
                                                    for x in holds) + " |")
    print(f"date {datetime.date.today()}; {time.time() - t_start:.0f} s")


if __name__ == "__main__":
    main()
