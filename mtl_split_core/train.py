"""Multi-task training (CPU for tiny tests, CUDA with bf16 autocast for real runs).

Data comes from shards loaded into memory (on the GPU when there is one), augmented per batch
on the device. Checkpoints (model card format) and a CSV log go to ``out_dir``; ``resume``
continues from ``out_dir/last.pt``.
"""

from __future__ import annotations

import csv
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from mtl_split_core.data.augment import augment_batch
from mtl_split_core.evaluate import evaluate, headline
from mtl_split_core.model import ModelConfig, MultiTaskSplitNet, save_model
from mtl_split_core.model.losses import MultiTaskLoss
from mtl_split_core.tasks import get_tasks


def train(config: ModelConfig, train_data: dict, val_data: dict | None, out_dir: str | Path,
          split: str | None = None, epochs: int = 30, batch_size: int = 32, lr: float = 2e-3,
          weighting: str = "uncertainty", device: str = "cpu", pretrained: bool = True,
          resume: bool = False, seed: int = 0, progress: bool = True,
          max_steps: int | None = None, time_budget_s: float | None = None) -> dict:
    """Train and return the final validation metrics (unsplit float and with the codec)."""
    torch.manual_seed(seed)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    dev = torch.device(device)
    split = split or config.default_split
    model = MultiTaskSplitNet(config, pretrained_backbone=pretrained).to(dev)
    if dev.type == "cuda":
        model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    tasks = get_tasks(config.tasks)
    criterion = MultiTaskLoss(config.tasks, weighting=weighting).to(dev)
    params: list[dict[str, Any]] = [
        {"params": model.backbone.parameters(), "lr": lr * 0.5},
        {"params": [p for n, p in model.named_parameters() if not n.startswith("backbone")]},
        {"params": criterion.parameters(), "weight_decay": 0.0}]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=1e-4)
    images = torch.from_numpy(train_data["images"]).to(dev)      # uint8 (N, H, W, 3)
    seg = torch.from_numpy(train_data["seg"]).to(dev)
    depth = torch.from_numpy(train_data["depth"]).to(dev)
    boxes = [torch.from_numpy(b).to(dev) for b in train_data["boxes"]]
    labels = [torch.from_numpy(lab).to(dev) for lab in train_data["labels"]]
    # fy of each frame (frames are at the network's input size); None if the data has none.
    k = train_data.get("k")
    focal = (torch.from_numpy(np.asarray(k, np.float32)[:, 4]).to(dev) if k is not None and
             len(k) else None)
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
        perm = torch.randperm(n, device=dev, generator=gen)
        bar = tqdm(range(steps_per_epoch), desc=f"epoch {epoch + 1}/{epochs}",
                   disable=None if progress else True, leave=False)
        sums: dict[str, float] = {}
        b = 0
        for b in bar:
            if step >= total_steps or (time_budget_s and time.time() - t0 > time_budget_s):
                break
            idx = perm[b * batch_size:(b + 1) * batch_size]
            x = images[idx].permute(0, 3, 1, 2).float().div_(255.0)
            bl = [boxes[i] for i in idx.tolist()]
            ll = [labels[i] for i in idx.tolist()]
            x, s, d, bl, ll, zoom = augment_batch(x, seg[idx], depth[idx], bl, ll,
                                                  generator=gen)
            batch = {"image": x, "seg": s, "depth": d, "boxes": bl, "labels": ll}
            targets = {task.name: task.targets(batch, config) for task in tasks}
            if dev.type == "cuda":
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=amp):
                out = model(x, split, focal=None if focal is None else focal[idx] * zoom)
            loss, parts = criterion(out, targets)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            opt.step()
            sched.step()
            step += 1
            for k, v in {"loss": float(loss.detach()), **parts}.items():
                sums[k] = sums.get(k, 0.0) + v
            bar.set_postfix(loss=f"{float(loss):.3f}")
        count = max(1, b + 1)
        writer.writerow([epoch, step, f"{sums.get('loss', 0) / count:.4f}",
                         *[f"{sums.get(t, 0) / count:.4f}" for t in config.tasks],
                         f"{sched.get_last_lr()[1]:.2e}", f"{time.time() - t0:.1f}"])
        log.flush()
        torch.save({"model": model.state_dict(), "criterion": criterion.state_dict(),
                    "opt": opt.state_dict(), "sched": sched.state_dict(), "epoch": epoch,
                    "step": step}, last)
        if progress:
            print(f"epoch {epoch + 1}: loss {sums.get('loss', 0) / count:.3f} "
                  + " ".join(f"{t} {sums.get(t, 0) / count:.3f}" for t in config.tasks)
                  + f" ({time.time() - t0:.0f}s)", flush=True)
        if step >= total_steps or (time_budget_s and time.time() - t0 > time_budget_s):
            break
    log.close()
    model.eval()
    save_model(out_dir / "model", model, fp16=True,
               extra={"trained": {"epochs": epochs, "frames": n, "split": split,
                                  "weighting": weighting, "steps": step}})
    result = {}
    if val_data is not None and len(val_data["images"]):
        result["float"] = headline(evaluate(model, val_data, split, None, dev))
        result["codec"] = headline(evaluate(model, val_data, split, config.codec, dev))
    return result
