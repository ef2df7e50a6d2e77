"""Experiment (#23): fine-tune the split bottleneck so consecutive frames' symbols change less.

The temporal codecs code a frame's eb-k symbols given the previous frame's (88% are equal on
the sim sequences, bench/results/temporal_context_analysis.md). Whatever the bottleneck sends
that flickers from frame to frame (below its 16-pixel stride the tensor is not
shift-equivariant) costs bits on every delta frame. This fine-tune lets the edge's 1x1
bottleneck (and the server's) pick combinations of the backbone's channels that move less
between frames, at the tasks' accuracy:

    loss = task losses + distill x distance to the unsplit model's outputs
           + anchor x the float network's distance + lam_t x kilobytes of a delta frame

on pairs of consecutive frames of 30 fps sim sequences (training seeds, never the benchmark's
seed 23). A delta frame's rate is a differentiable proxy: operating point ``--op``'s symbols
(the card's gains, fixed) of frame t under a per-channel discrete Laplace centred on frame
t-1's symbol (scale learned), with additive uniform noise on t's values; the server half sees
the rounded symbols (straight-through). ``--train-prefix`` also trains the backbone's stages up
to the split (the whole edge, so the tensor itself can learn to move with the image; run every
step, a GPU's job: ``--device cuda``). Writes a card without entropy tables (fit them with
``train-eb``, docs/TRAINING.md) and ``training.json``.

    PYTHONPATH=. python bench/entropy/temporal_bottleneck.py --model models/default \
        --sequences data/rate_accuracy/v2_sequences_seed1_n400_g50_640x480_320x240_noise0.npz \
        --out /tmp/tb --steps 1500 --lam-t 2.0
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench" / "rate_accuracy"))
import sim_frames  # noqa: E402

from mtl_split_core.entropy_tables import tables_of  # noqa: E402
from mtl_split_core.model.card import load_model, save_model  # noqa: E402
from mtl_split_core.model.losses import MultiTaskLoss  # noqa: E402
from mtl_split_core.tasks import get_tasks  # noqa: E402
from mtl_split_core.tasks.depth import frame_focals  # noqa: E402
from mtl_split_core.train_entropy import (  # noqa: E402
    _scaled_mse,
    head_outputs,
    output_distance,
    prefix_features,
    task_weights,
)


def concat(datasets: list[dict]) -> dict:
    """One dataset of several sequence files; ``group_of`` kept distinct per file."""
    out: dict = {}
    offset = 0
    for d in datasets:
        for key in ("images", "seg", "depth", "k"):
            out.setdefault(key, []).append(d[key])
        out.setdefault("group_of", []).append(d["group_of"] + offset)
        offset += int(d["group_of"].max()) + 1
        for key in ("boxes", "labels"):
            out.setdefault(key, []).extend(d[key])
    for key in ("images", "seg", "depth", "k", "group_of"):
        out[key] = np.concatenate(out[key])
    return out


def laplace_bits(d: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """-log2 P(bin of width 1 around ``d``) under a zero-mean Laplace of ``scale``."""
    def cdf(x: torch.Tensor) -> torch.Tensor:
        return torch.where(x < 0, 0.5 * torch.exp(x / scale),
                           1 - 0.5 * torch.exp(-x / scale))
    p = cdf(d + 0.5) - cdf(d - 0.5)
    return -torch.log2(p.clamp_min(1e-9))


def round_ste(x: torch.Tensor) -> torch.Tensor:
    return x + (torch.round(x) - x).detach()


def _prefix_parameters(model, stage: int) -> list[torch.nn.Parameter]:
    """The backbone's parameters that stages 0..``stage`` use (found by one backward pass: the
    stages' modules differ per backbone), now trainable."""
    params = list(model.backbone.parameters())
    for p in params:
        p.requires_grad_(True)
    x = torch.zeros(1, 3, 64, 64, device=next(model.parameters()).device)
    model.backbone.run(x, 0, stage + 1)[-1].sum().backward()
    used = [p for p in params if p.grad is not None]
    for p in params:
        p.grad = None
        p.requires_grad_(any(p is u for u in used))
    return used


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="models/default")
    ap.add_argument("--sequences", action="append", required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--op", type=int, default=3)
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--lam-t", type=float, default=2.0, help="weight per kilobyte of a delta")
    ap.add_argument("--distill", type=float, default=1.0)
    ap.add_argument("--task-weight", type=float, default=0.0,
                    help="weight of the task losses on the sequences' labels (0: distillation "
                         "only, so the fine-tune does not adapt to the sequences' domain)")
    ap.add_argument("--anchor", type=float, default=0.1)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--train-prefix", action="store_true",
                    help="also fine-tune the backbone's stages up to the split (the edge's "
                         "whole network, run every step: a GPU's job)")
    ap.add_argument("--prefix-lr", type=float, default=1e-4)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    torch.manual_seed(args.seed)
    dev = torch.device(args.device)
    teacher, base_card = load_model(args.model, dev)
    student, _ = load_model(args.model, dev)
    split = student.config.default_split
    tables = tables_of(student.config.entropy)
    point = tables.points[args.op]
    gain, lo, hi = (torch.tensor(v, dtype=torch.float32, device=dev).view(1, -1, 1, 1)
                    for v in (point.gain, point.lo, point.hi))
    data = concat([sim_frames.load(Path(p)) for p in args.sequences])
    group = data["group_of"]
    pairs = np.flatnonzero(np.r_[False, group[1:] == group[:-1]])  # frames with a predecessor

    bottleneck = student.bottlenecks[split]
    t_bottleneck = teacher.bottlenecks[split]
    for p in student.parameters():
        p.requires_grad_(False)
    for p in bottleneck.parameters():
        p.requires_grad_(True)
    stage = student.split_names.index(split)
    prefix_params = _prefix_parameters(student, stage) if args.train_prefix else []
    student.eval()
    teacher.eval()
    t0 = time.time()
    feats = prefix_features(student, data["images"], split, dev)
    images = torch.from_numpy(data["images"]).to(dev) if args.train_prefix else None
    print(f"{len(feats)} frames, {len(pairs)} pairs, features in {time.time() - t0:.0f}s; "
          f"{sum(p.numel() for p in prefix_params)} prefix weights trained", flush=True)

    def prefix(model, idx: torch.Tensor) -> torch.Tensor:
        """``model``'s features at the split of frames ``idx``: the frozen ones precomputed,
        else run (with gradients where the prefix trains)."""
        if images is None:
            return feats[idx.to(dev)].float()
        x = images[idx.to(dev)].permute(0, 3, 1, 2).float() / 255.0
        return model.backbone.run((x - model.mean) / model.std, 0, stage + 1)[-1]

    tasks = get_tasks(student.config.tasks)
    seg = torch.from_numpy(data["seg"]).to(dev)
    depth = torch.from_numpy(data["depth"]).to(dev)
    boxes = [torch.from_numpy(b).to(dev) for b in data["boxes"]]
    labels = [torch.from_numpy(v).to(dev) for v in data["labels"]]
    focals = frame_focals(data["k"], student.config.depth_reference_focal, dev)
    out_hw = data["images"].shape[1:3]
    shape_of_images = torch.empty((args.batch_size, 1, *out_hw), dtype=torch.uint8, device=dev)
    gen = torch.Generator().manual_seed(args.seed)

    def draw():
        idx = torch.from_numpy(pairs[torch.randint(len(pairs), (args.batch_size,),
                                                   generator=gen).numpy()])
        on = idx.to(dev)
        batch = {"image": shape_of_images, "seg": seg[on], "depth": depth[on],
                 "boxes": [boxes[i] for i in idx.tolist()],
                 "labels": [labels[i] for i in idx.tolist()]}
        with torch.no_grad():
            f_teacher = prefix(teacher, idx)
        return (idx, f_teacher, {task.name: task.targets(batch, student.config) for task in tasks},
                None if focals is None else focals[on])

    def teacher_pass(f, focal):
        with torch.no_grad():
            z = t_bottleneck.encode(f)
            return t_bottleneck.decode(z), teacher.server(z, split, out_hw=out_hw, focal=focal)

    probe = MultiTaskLoss(student.config.tasks, weighting="fixed")
    seen: dict[str, list[float]] = {t: [] for t in student.config.tasks}
    outputs_of: dict = {}
    for i in range(4):
        _, f, targets_t, focal = draw()
        if i == 0:
            outputs_of, (_, t_out) = head_outputs(teacher, split, teacher_pass, f, focal)
        else:
            _, t_out = teacher_pass(f, focal)
        _, per_task = probe(t_out, targets_t, {})
        for t, v in per_task.items():
            seen[t].append(v)
    weights = task_weights(seen)
    teacher_loss = {t: 1.0 / w for t, w in weights.items()}
    criterion = MultiTaskLoss(student.config.tasks, weighting="fixed", fixed_weights=weights)

    with torch.no_grad():  # each channel's spread at the start: the rate is measured in it
        y0 = torch.cat([bottleneck.encode(feats[i:i + 256].float())
                        for i in range(0, len(feats), 256)])
        spread0 = y0.std((0, 2, 3)).view(1, -1, 1, 1)
    log_scale = torch.zeros(1, gain.shape[1], 1, 1, device=dev, requires_grad=True)
    groups = [{"params": list(bottleneck.parameters()), "lr": args.lr},
              {"params": [log_scale], "lr": 1e-2}]
    if prefix_params:
        groups.append({"params": prefix_params, "lr": args.prefix_lr})
    opt = torch.optim.Adam(groups)
    base_lrs = [g["lr"] for g in opt.param_groups]
    history = []
    ema: dict[str, float] = {}
    start = time.time()
    for step in range(args.steps):
        for g, base in zip(opt.param_groups, base_lrs):  # cosine
            g["lr"] = base * 0.5 * (1 + math.cos(math.pi * step / args.steps))
        idx, f_teacher, targets_t, focal = draw()
        t_mid, t_out = teacher_pass(f_teacher, focal)
        f_t, f_p = prefix(student, idx), prefix(student, idx - 1)
        y_t, y_p = bottleneck.encode(f_t), bottleneck.encode(f_p)
        # Re-calibrating the gains to a frame size undoes any shrinking of the output, so
        # the delta's rate is measured relative to each channel's spread (batch std).
        norm = gain * spread0 / torch.cat([y_t, y_p]).std((0, 2, 3)).view(1, -1, 1, 1)
        u_t = torch.maximum(torch.minimum(y_t * norm, hi), lo)
        u_p = torch.maximum(torch.minimum(y_p * norm, hi), lo)
        s_t, s_p = round_ste(u_t), round_ste(u_p)
        out = student.server(s_t / norm, split, out_hw=out_hw, focal=focal)
        task_loss, _ = criterion(out, targets_t, {})
        dist = output_distance(out, t_out, outputs_of, teacher_loss)
        anchor = _scaled_mse(bottleneck.decode(y_t), t_mid)
        noisy = u_t + torch.empty_like(u_t).uniform_(-0.5, 0.5)
        bits = laplace_bits(noisy - s_p, torch.exp(log_scale)).sum((1, 2, 3)).mean()
        kbytes = bits / 8 / 1000
        loss = (args.task_weight * task_loss + args.distill * dist + args.anchor * anchor
                + args.lam_t * kbytes)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for g in groups for p in g["params"]], 5.0)
        opt.step()
        with torch.no_grad():
            same = float((torch.round(u_t) == torch.round(u_p)).float().mean())
        for key, v in (("task", float(task_loss.detach())), ("distill", float(dist.detach())),
                       ("delta_bytes", float(kbytes.detach()) * 1000), ("same", same)):
            ema[key] = v if key not in ema else 0.95 * ema[key] + 0.05 * v
        if step % 50 == 0 or step == args.steps - 1:
            row = {"step": step, "s": round(time.time() - start, 1),
                   **{k: round(v, 4) for k, v in ema.items()}}
            history.append(row)
            print(json.dumps(row), flush=True)

    fp16 = base_card.get("weights_dtype", "float16") == "float16"
    with torch.no_grad():
        for p in bottleneck.parameters():
            p.copy_(p.half().float() if fp16 else p)
    student.config = dataclasses.replace(student.config, entropy=None, codec="q4-zstd/1",
                                         name=f"{base_card['name']}_tb")
    save_model(args.out / "model", student, fp16=fp16, extra={
        "fine_tuned_from": {"name": base_card.get("name"),
                            "fingerprint": base_card["fingerprint"], "fresh_heads": [],
                            "edge_frozen": False}})
    (args.out / "training.json").write_text(json.dumps(
        {"args": {k: str(v) for k, v in vars(args).items()}, "history": history}, indent=1))
    print(f"wrote {args.out / 'model'}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
