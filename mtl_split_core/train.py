"""Multi-task training (CPU for tiny tests, CUDA with bf16 autocast for real runs).

Data comes from shards loaded into memory (on the GPU when there is one), augmented per batch
on the device. Checkpoints (model card format) and a CSV log go to ``out_dir``; ``resume``
continues from ``out_dir/last.pt``.

Mixed and partially labelled data (docs/DATA_FORMAT.md): each task learns only from the frames
that carry its label (``has_<task>``); frames with no label for any of the model's tasks are
left out. With ``sample_weight`` batches are drawn with replacement in proportion to it (each
source's share as asked), else each epoch is a permutation. Unknown intrinsics (a NaN ``k``
row) mean the reference camera of the depth head. ``init_model`` fine-tunes an existing model
(``model/finetune.py``); ``freeze_edge`` then keeps its edge part bit for bit, and the card's
``accepts_edge_fingerprint`` names the deployed edges the new server model serves.
"""

from __future__ import annotations

import csv
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from mtl_split_core.data.augment import augment_batch
from mtl_split_core.evaluate import evaluate, headline
from mtl_split_core.model import ModelConfig, MultiTaskSplitNet, finetune, load_model, save_model
from mtl_split_core.model.losses import MultiTaskLoss
from mtl_split_core.tasks import get_tasks, labelled_field
from mtl_split_core.tasks.depth import frame_focals

IGNORE_LABEL = -1  # ignore boxes ride through the augmentation with the boxes, marked by this


def labelled_frames(data: dict, tasks: tuple[str, ...]) -> np.ndarray:
    """(N,) bool: the frames carrying a label for at least one of ``tasks``."""
    n = len(data["images"])
    flags = [np.asarray(data[labelled_field(t)], bool).reshape(n) for t in tasks
             if labelled_field(t) in data]
    if len(flags) < len(tasks):  # a task without flags: every frame has its label
        return np.ones(n, bool)
    return np.logical_or.reduce(flags) if flags else np.ones(n, bool)


def select_data(data: dict, keep: np.ndarray) -> dict:
    """The frames ``keep`` marks of a dataset dict (every per-frame field)."""
    index = np.flatnonzero(keep)
    n = len(data["images"])
    out: dict[str, Any] = {}
    for key, values in data.items():
        if isinstance(values, np.ndarray) and len(values) == n:
            out[key] = values[index]
        elif isinstance(values, list) and len(values) == n:
            out[key] = [values[i] for i in index]
        else:
            out[key] = values
    return out


def _sampling_weights(data: dict, device: torch.device) -> torch.Tensor | None:
    """The frames' drawing weights, None when the data has none or they are all equal."""
    weights = data.get("sample_weight")
    if weights is None:
        return None
    w = np.asarray(weights, np.float64).reshape(-1)
    if len(w) != len(data["images"]) or not np.isfinite(w).all() or (w < 0).any() or \
            not w.sum() > 0:
        raise ValueError("sample_weight must hold one finite weight >= 0 per frame, not all 0")
    if (w == w[0]).all():
        return None  # uniform: an epoch is a permutation, as without weights
    return torch.from_numpy(w).to(device)


def epoch_order(n: int, draws: int, weights: torch.Tensor | None,
                generator: torch.Generator) -> torch.Tensor:
    """The frame indices of one epoch: a permutation of the ``n`` frames without ``weights``,
    else ``draws`` indices drawn with replacement in proportion to them."""
    if weights is None:
        return torch.randperm(n, device=generator.device, generator=generator)
    return torch.multinomial(weights, draws, replacement=True, generator=generator)


def train(config: ModelConfig, train_data: dict, val_data: dict | None, out_dir: str | Path,
          split: str | Sequence[str] | None = None, epochs: int = 30, batch_size: int = 32,
          lr: float = 2e-3,
          weighting: str = "uncertainty", device: str = "cpu", pretrained: bool = True,
          resume: bool = False, seed: int = 0, progress: bool = True,
          max_steps: int | None = None, time_budget_s: float | None = None,
          init_model: str | Path | None = None, freeze_edge: bool = False) -> dict:
    """Train and return the final validation metrics (unsplit float and with the codec).

    ``split``: the split point to train at, or several: each step then runs at one of them
    drawn at random, so one model (one card, one server) serves every split; the metrics are
    then per split (``per_split``), the first split's also at the top level.

    ``init_model``: a model folder to fine-tune: its split contract and weights are kept and
    ``config`` contributes the name, class lists and tasks (``finetune.fine_tune_config``);
    heads whose classes changed start afresh. ``freeze_edge`` (needs ``init_model``):
    the edge part gets no gradient and keeps its batch-norm statistics.
    """
    if freeze_edge and init_model is None:
        raise ValueError("freezing the edge part needs a model to fine-tune (init_model)")
    base: MultiTaskSplitNet | None = None
    init_card: dict | None = None
    if init_model is not None:
        base, init_card = load_model(init_model)
        config = finetune.fine_tune_config(base.config, config)
    keep = labelled_frames(train_data, config.tasks)
    if not keep.any():
        raise ValueError(f"no training frame carries a label for any of {config.tasks}")
    if not keep.all():
        train_data = select_data(train_data, keep)
    torch.manual_seed(seed)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    dev = torch.device(device)
    splits = (split or config.default_split,) if split is None or isinstance(split, str) \
        else tuple(split)
    split = splits[0]
    # Its own generator: single-split training draws exactly what it drew before.
    split_gen = torch.Generator().manual_seed(seed + 1)
    if len(splits) > 1 and base is None:
        raise ValueError("training several splits starts from a trained model (init_model): "
                         "its batch-norm statistics are the ones every split must share")
    model = MultiTaskSplitNet(config, pretrained_backbone=pretrained and base is None)
    fresh_heads: list[str] = []
    frozen: list[torch.nn.Module] = []
    fixed_statistics: list[torch.nn.Module] = []  # kept in eval mode (batch-norm statistics)
    if base is not None:
        fresh_heads = finetune.transfer_weights(model, base)
        if freeze_edge:
            finetune.freeze_edge(model)
            frozen = model.edge_modules()
        if len(splits) > 1:
            # The layers after a split see a different bottleneck's output at each step, so
            # running statistics averaged over the splits fit none of them (the model trains
            # well and evaluates at chance). Keep the base's statistics everywhere but in the
            # new bottlenecks: those learn to feed the shared layers what they expect.
            new = tuple(f"bottlenecks.{s}." for s, c in config.bottlenecks.items()
                        if c and not base.config.bottlenecks.get(s))
            fixed_statistics = [m for name, m in model.named_modules()
                                if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)
                                and not name.startswith(new)]
    model = model.to(dev)
    if dev.type == "cuda":
        model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    tasks = get_tasks(config.tasks)
    criterion = MultiTaskLoss(config.tasks, weighting=weighting).to(dev)
    params: list[dict[str, Any]] = [
        {"params": [p for p in model.backbone.parameters() if p.requires_grad],
         "lr": lr * 0.5},
        {"params": [p for n, p in model.named_parameters()
                    if not n.startswith("backbone") and p.requires_grad]},
        {"params": criterion.parameters(), "weight_decay": 0.0}]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=1e-4)
    images = torch.from_numpy(train_data["images"]).to(dev)      # uint8 (N, H, W, 3)
    seg = torch.from_numpy(train_data["seg"]).to(dev)
    depth = torch.from_numpy(train_data["depth"]).to(dev)
    boxes = [torch.from_numpy(b).to(dev) for b in train_data["boxes"]]
    labels = [torch.from_numpy(lab).to(dev) for lab in train_data["labels"]]
    ignore_boxes = train_data.get("ignore_boxes")
    ignores = ([torch.from_numpy(np.asarray(b, np.float32).reshape(-1, 4)).to(dev)
                for b in ignore_boxes]
               if ignore_boxes is not None and any(len(b) for b in ignore_boxes) else None)
    labelled = {t: torch.from_numpy(np.asarray(train_data[labelled_field(t)], bool)).to(dev)
                for t in config.tasks if labelled_field(t) in train_data}
    weights = _sampling_weights(train_data, dev)
    # fy of each frame (frames are at the network's input size); None if the data has none.
    focal = frame_focals(train_data.get("k"), config.depth_reference_focal, dev)
    n = len(images)
    steps_per_epoch = max(1, n // batch_size)
    total_steps = min(epochs * steps_per_epoch, max_steps or 10 ** 9)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=[lr * 0.5, lr, lr], total_steps=total_steps, pct_start=0.1)
    start_epoch, step = 0, 0
    last = out_dir / "last.pt"
    if resume and last.exists():
        ck = torch.load(last, map_location=dev, weights_only=False)
        model.load_state_dict(ck["model"])
        criterion.load_state_dict(ck["criterion"])
        opt.load_state_dict(ck["opt"])
        sched.load_state_dict(ck["sched"])
        start_epoch, step = ck["epoch"] + 1, ck["step"]
    amp = dev.type == "cuda"
    log_path = out_dir / "train_log.csv"
    log = open(log_path, "a", newline="")
    writer = csv.writer(log)
    if log_path.stat().st_size == 0:
        writer.writerow(["epoch", "step", "loss", *config.tasks, "lr", "seconds"])
    gen = torch.Generator(device=dev).manual_seed(seed)
    t0 = time.time()
    for epoch in range(start_epoch, epochs):
        model.train()
        for module in frozen + fixed_statistics:  # their batch-norm statistics stay
            module.eval()
        perm = epoch_order(n, steps_per_epoch * batch_size, weights, gen)
        bar = tqdm(range(steps_per_epoch), desc=f"epoch {epoch + 1}/{epochs}",
                   disable=None if progress else True, leave=False)
        sums: dict[str, float] = {}
        counts: dict[str, int] = {}
        for b in bar:
            if step >= total_steps or (time_budget_s and time.time() - t0 > time_budget_s):
                break
            idx = perm[b * batch_size:(b + 1) * batch_size]
            x = images[idx].permute(0, 3, 1, 2).float().div_(255.0)
            bl = [boxes[i] for i in idx.tolist()]
            ll = [labels[i] for i in idx.tolist()]
            if ignores is not None:  # same geometry as the boxes, split off again below
                bl = [torch.cat([b_, ignores[i]]) for b_, i in zip(bl, idx.tolist())]
                ll = [torch.cat([lab, lab.new_full((len(ignores[i]),), IGNORE_LABEL)])
                      for lab, i in zip(ll, idx.tolist())]
            x, s, d, bl, ll, zoom = augment_batch(x, seg[idx], depth[idx], bl, ll,
                                                  generator=gen)
            batch = {"image": x, "seg": s, "depth": d, "boxes": bl, "labels": ll}
            if ignores is not None:
                batch["ignore_boxes"] = [b_[lab == IGNORE_LABEL] for b_, lab in zip(bl, ll)]
                batch["boxes"] = [b_[lab != IGNORE_LABEL] for b_, lab in zip(bl, ll)]
                batch["labels"] = [lab[lab != IGNORE_LABEL] for lab in ll]
            targets = {task.name: task.targets(batch, config) for task in tasks}
            if dev.type == "cuda":
                x = x.contiguous(memory_format=torch.channels_last)
            step_split = splits[0] if len(splits) == 1 else \
                splits[int(torch.randint(len(splits), (1,), generator=split_gen))]
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=amp):
                out = model(x, step_split, focal=None if focal is None else focal[idx] * zoom)
            loss, parts = criterion(out, targets, {t: m[idx] for t, m in labelled.items()})
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            opt.step()
            sched.step()
            step += 1
            for k, v in {"loss": float(loss.detach()), **parts}.items():
                sums[k] = sums.get(k, 0.0) + v
                counts[k] = counts.get(k, 0) + 1
            bar.set_postfix(loss=f"{float(loss.detach()):.3f}")
        mean = {k: sums[k] / counts[k] for k in sums}  # per task: over batches that had it
        writer.writerow([epoch, step, f"{mean.get('loss', 0):.4f}",
                         *[f"{mean[t]:.4f}" if t in mean else "" for t in config.tasks],
                         f"{sched.get_last_lr()[1]:.2e}", f"{time.time() - t0:.1f}"])
        log.flush()
        torch.save({"model": model.state_dict(), "criterion": criterion.state_dict(),
                    "opt": opt.state_dict(), "sched": sched.state_dict(), "epoch": epoch,
                    "step": step}, last)
        if progress:
            print(f"epoch {epoch + 1}: loss {mean.get('loss', 0):.3f} "
                  + " ".join(f"{t} {mean[t]:.3f}" for t in config.tasks if t in mean)
                  + f" ({time.time() - t0:.0f}s)", flush=True)
        if step >= total_steps or (time_budget_s and time.time() - t0 > time_budget_s):
            break
    log.close()
    model.eval()
    extra: dict[str, Any] = {"trained": {"epochs": epochs, "frames": n, "split": split,
                                         **({"splits": list(splits)} if len(splits) > 1 else {}),
                                         "weighting": weighting, "steps": step}}
    fp16 = True
    if init_card is not None:
        # The base's storage precision: a frozen edge then stays bit for bit what robots run.
        fp16 = init_card.get("weights_dtype", "float16") == "float16"
        extra["fine_tuned_from"] = {"name": init_card.get("name"),
                                    "fingerprint": init_card["fingerprint"],
                                    "fresh_heads": fresh_heads, "edge_frozen": bool(frozen)}
        if frozen:
            # Robots keep running the edge they were deployed with: the base's, or the one
            # the base itself accepted when it was a frozen-edge fine-tune too.
            extra["accepts_edge_fingerprint"] = (init_card.get("accepts_edge_fingerprint")
                                                 or init_card["fingerprint"])
    save_model(out_dir / "model", model, fp16=fp16, extra=extra)
    result = {}
    if val_data is not None and len(val_data["images"]):
        result["float"] = headline(evaluate(model, val_data, split, None, dev))
        result["codec"] = headline(evaluate(model, val_data, split, config.codec, dev))
        if len(splits) > 1:
            result["per_split"] = {s: headline(evaluate(model, val_data, s, config.codec, dev))
                                   for s in splits}
    return result
