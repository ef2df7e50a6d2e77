"""Multi-task training (CPU for tiny tests, CUDA with bf16 autocast for real runs), in one
process or data-parallel over several (``torchrun``, ``distributed.py``).

Frames are decoded on demand by DataLoader workers (``data/frames.py``: memory does not grow
with the data set) and augmented per batch on the device. An epoch's order is a function of
(seed, epoch) alone, cut into global batches of ``batch_size``; with N processes each takes its
N-th of every batch and draws the whole batch's augmentation, so N processes see exactly what
one process with the same global batch sees (batch norm statistics are synchronised). Only the
first process writes: checkpoints (``last.pt``: weights, optimiser, scheduler, random states,
position in the epoch; replaced atomically), the CSV log and the model card. ``resume``
continues from ``out_dir/last.pt`` where it stopped, mid-epoch included, to the same result.

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
import dataclasses
import io
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from mtl_split_core.codec import split_default
from mtl_split_core.data.augment import augment_batch
from mtl_split_core.data.frames import (
    LABEL_TASKS,
    Frames,
    as_frames,
    collate_tensors,
    frame_batches,
)
from mtl_split_core.distributed import World, mean_over_world, sync_batch_norm
from mtl_split_core.entropy_tables import tables_of
from mtl_split_core.evaluate import evaluate, headline
from mtl_split_core.model import ModelConfig, MultiTaskSplitNet, finetune, load_model, save_model
from mtl_split_core.model.card import ACCEPTS_EDGE, edge_lineage
from mtl_split_core.model.losses import MultiTaskLoss, scaled_output_distance
from mtl_split_core.output_folder import atomic_write_bytes, replacing_folder
from mtl_split_core.tasks import get_tasks, labelled_field
from mtl_split_core.tasks.depth import frame_focals

IGNORE_LABEL = -1  # ignore boxes ride through the augmentation with the boxes, marked by this
PRECISIONS = ("bf16", "fp32")
CHECKPOINT = "last.pt"


def labelled_frames(data: dict | Frames, tasks: tuple[str, ...]) -> np.ndarray:
    """(N,) bool: the frames that may carry a label for at least one of ``tasks`` (known
    without decoding them; a task other than the built-in ones: every frame)."""
    frames = as_frames(data)
    if not set(tasks) <= set(LABEL_TASKS):
        return np.ones(len(frames), bool)
    columns = [LABEL_TASKS.index(t) for t in tasks]
    return np.asarray(frames.may_label[:, columns].any(axis=1), bool)


def epoch_order(n: int, draws: int, weights: torch.Tensor | None,
                generator: torch.Generator) -> torch.Tensor:
    """The frame indices of one epoch: a permutation of the ``n`` frames without ``weights``,
    else ``draws`` indices drawn with replacement in proportion to them."""
    if weights is None:
        return torch.randperm(n, device=generator.device, generator=generator)
    return torch.multinomial(weights, draws, replacement=True, generator=generator)


def _sampling_weights(frames: Frames) -> torch.Tensor | None:
    """The frames' drawing weights, None when the data has none or they are all equal."""
    if frames.weights is None:
        return None
    w = np.asarray(frames.weights, np.float64).reshape(-1)
    if len(w) != len(frames) or not np.isfinite(w).all() or (w < 0).any() or not w.sum() > 0:
        raise ValueError("sample_weight must hold one finite weight >= 0 per frame, not all 0")
    if (w == w[0]).all():
        return None  # uniform: an epoch is a permutation, as without weights
    return torch.from_numpy(w)


class EpochBatches:
    """This process's index lists for the batches of one epoch, from batch ``first`` on:
    the epoch's order depends on (seed, epoch) only, so a resumed run and every process
    agree on it without communicating."""

    def __init__(self, n: int, batch_size: int, steps: int, weights: torch.Tensor | None,
                 seed: int, epoch: int, world: World, first: int = 0) -> None:
        gen = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
        self.order = epoch_order(n, steps * batch_size, weights, gen)
        while len(self.order) < steps * batch_size:  # fewer frames than one batch: again
            self.order = torch.cat([self.order, epoch_order(n, 0, weights, gen)])
        self.batch_size, self.steps, self.world, self.first = batch_size, steps, world, first
        self.local = batch_size // world.size

    def __len__(self) -> int:
        return self.steps - self.first

    def __iter__(self) -> Iterator[list[int]]:
        for b in range(self.first, self.steps):
            start = b * self.batch_size + self.world.rank * self.local
            yield self.order[start:start + self.local].tolist()


@dataclass
class _Progress:
    """Where training stands; saved in every checkpoint, restored on resume."""

    epoch: int = 0              # the epoch under way
    batch: int = 0              # its batches done
    step: int = 0               # optimiser steps done in all
    seconds: float = 0.0        # training time so far
    rows: list[list[str]] = field(default_factory=list)       # the log's rows so far
    sums: dict[str, float] = field(default_factory=dict)      # this epoch's losses
    counts: dict[str, int] = field(default_factory=dict)

    def add(self, values: dict[str, float]) -> None:
        for k, v in values.items():
            self.sums[k] = self.sums.get(k, 0.0) + v
            self.counts[k] = self.counts.get(k, 0) + 1

    def mean(self) -> dict[str, float]:
        """This epoch's mean losses (a task's: over the batches that had it)."""
        return {k: self.sums[k] / self.counts[k] for k in self.sums}


class _TrainStep(nn.Module):
    """Model and loss in one module, so data parallelism averages the gradients of both
    (the loss has learned task weights)."""

    def __init__(self, model: MultiTaskSplitNet, criterion: MultiTaskLoss, amp: bool,
                 every_output: bool = False, teacher: MultiTaskSplitNet | None = None,
                 distill: float = 0.0) -> None:
        super().__init__()
        self.model, self.criterion, self.amp = model, criterion, amp
        self.every_output = every_output
        self.teacher, self.distill = teacher, distill

    def forward(self, x: torch.Tensor, split: str, focal: torch.Tensor | None,
                targets: dict[str, Any], labelled: dict[str, torch.Tensor]
                ) -> tuple[torch.Tensor, dict[str, float]]:
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=self.amp):
            out = self.model(x, split, focal=focal)
        loss, parts = self.criterion(out, targets, labelled)
        if self.teacher is not None:
            # The base model's outputs at its own split hold what it learned while the
            # weights move to serve other splits too (the labels alone let the shared layers
            # drift: a fine-tune for s8/s32 without it lost 0.06 mIoU at s16 on unseen scenes).
            with torch.no_grad(), torch.autocast(x.device.type, dtype=torch.bfloat16,
                                                 enabled=self.amp):
                ref = self.teacher(x, self.teacher.config.default_split, focal=focal)
            term = scaled_output_distance(out, ref)
            parts["distill"] = float(term.detach())
            loss = loss + self.distill * term
        if self.every_output:
            # Every head in the graph, also one whose task this process's part of the batch
            # lacks: the backward then passes each synchronised batch norm (a collective) in
            # every process, as the other processes do. Its gradient is zero.
            loss = loss + sum(o.float().sum() for o in out.values()) * 0.0
        return loss, parts


def _write_log(path: Path, header: list[str], rows: list[list[str]]) -> None:
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow(header)
    writer.writerows(rows)
    atomic_write_bytes(path, text.getvalue().encode())


def _to_device(batch: dict[str, Any], dev: torch.device) -> dict[str, Any]:
    return {k: [t.to(dev, non_blocking=True) for t in v] if isinstance(v, list) else
            v.to(dev, non_blocking=True) for k, v in batch.items()}


def train(config: ModelConfig, train_data: dict | Frames, val_data: dict | Frames | None,
          out_dir: str | Path, split: str | Sequence[str] | None = None, epochs: int = 30,
          batch_size: int = 32, lr: float = 2e-3,
          weighting: str = "uncertainty", device: str = "cpu", pretrained: bool = True,
          resume: bool = False, seed: int = 0, progress: bool = True,
          max_steps: int | None = None, time_budget_s: float | None = None,
          init_model: str | Path | None = None, freeze_edge: bool = False,
          workers: int = 0, precision: str = "bf16", checkpoint_every: int = 0,
          distill: float = 0.0, per_split_heads: bool = False,
          per_split_server: bool = False, world: World | None = None) -> dict:
    """Train and return the final validation metrics (unsplit float and with the codec).

    ``split``: the split point to train at, or several: each step then runs at one of them
    drawn at random, so one model (one card, one server) serves every split; the metrics are
    then per split (``per_split``), the first split's also at the top level.

    ``init_model``: a model folder to fine-tune: its split contract and weights are kept and
    ``config`` contributes the name, class lists and tasks (``finetune.fine_tune_config``);
    heads whose classes changed start afresh. ``freeze_edge`` (needs ``init_model``):
    the edge part gets no gradient and keeps its batch-norm statistics.

    ``batch_size`` is the global batch (over every process of ``world``, which must divide
    it); ``workers`` DataLoader processes decode frames (0 = in this process); ``precision``
    bf16 = autocast on CUDA (the CPU always trains in fp32); ``checkpoint_every`` N > 0 also
    checkpoints every N steps within an epoch (else at each epoch's end only).

    ``distill`` > 0 (needs ``init_model``): adds that weight times the distance of every output
    to the base model's, run unchanged at its own default split on the same augmented frames
    (``losses.scaled_output_distance``), so a fine-tune that adds splits keeps what the base does.

    ``per_split_heads`` (needs ``init_model``): every split of ``split`` but the base's default
    split gets a neck and heads of its own (starting as copies of the shared ones) and only
    those splits are trained, with every weight the default split uses frozen
    (``finetune.freeze_split_path``): the default split's outputs stay bit for bit the base's.
    ``per_split_server`` (implies ``per_split_heads``): those splits' whole server half is
    their own: also the backbone stages after the split (copies of the base's, trained with
    the base's batch-norm statistics kept) and a neck with learned upsampling steps
    (``ModelConfig.per_split_server``), so each split's server adapts to its bottleneck.
    """
    world = world or World()
    per_split_heads = per_split_heads or per_split_server
    if freeze_edge and init_model is None:
        raise ValueError("freezing the edge part needs a model to fine-tune (init_model)")
    if per_split_heads and init_model is None:
        raise ValueError("per-split heads are added to a trained model (init_model)")
    if distill and init_model is None:
        raise ValueError("distillation needs a model to learn from (init_model)")
    if not 0.0 <= distill <= 1e3:
        raise ValueError(f"distill weight {distill:g}: expected 0 to 1000")
    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r}: expected one of {', '.join(PRECISIONS)}")
    if batch_size % world.size:
        raise ValueError(f"batch size {batch_size} is not divisible by the {world.size} "
                         "processes (it is the global batch)")
    base: MultiTaskSplitNet | None = None
    init_card: dict | None = None
    if init_model is not None:
        base, init_card = load_model(init_model)
        config = finetune.tables_if_edge_kept(finetune.fine_tune_config(base.config, config),
                                              edge_kept=freeze_edge or per_split_heads)
        if base.config.entropy is not None and config.entropy is None and world.main:
            print(f"the edge learns: {init_model}'s entropy tables no longer fit its symbols; "
                  f"the new card has none and sends {config.codec} by default (mtl-split "
                  "train-eb fits new ones, docs/TRAINING.md)", flush=True)
    frames = as_frames(train_data)
    keep = labelled_frames(frames, config.tasks)
    if not keep.any():
        raise ValueError(f"no training frame carries a label for any of {config.tasks}")
    if not keep.all():
        frames = frames.subset(np.flatnonzero(keep))
    torch.manual_seed(seed)
    out_dir = Path(out_dir)
    if world.main:
        out_dir.mkdir(parents=True, exist_ok=True)
    dev = torch.device(device)
    splits = (split or config.default_split,) if split is None or isinstance(split, str) \
        else tuple(split)
    split = splits[0]
    # The splits the steps are drawn from: with per-split heads, all but the frozen default.
    step_splits = splits
    if per_split_heads:
        step_splits = tuple(s for s in splits if s != config.default_split)
        if not step_splits:
            raise ValueError(f"per-split heads: train at least one split other than the "
                             f"default split {config.default_split}")
        config = finetune.fine_tune_config(config, dataclasses.replace(  # adds them
            config, per_split_heads=step_splits,
            per_split_server=step_splits if per_split_server else ()))
    # Its own generator: single-split training draws exactly what it drew before.
    split_gen = torch.Generator().manual_seed(seed + 1)
    if len(splits) > 1 and base is None:
        raise ValueError("training several splits starts from a trained model (init_model): "
                         "its batch-norm statistics are the ones every split must share")
    model = MultiTaskSplitNet(config, pretrained_backbone=pretrained and base is None)
    if world.size > 1:
        model = sync_batch_norm(model, dev.type)  # type: ignore[assignment]
    fresh_heads: list[str] = []
    frozen: list[torch.nn.Module] = []
    fixed_statistics: list[torch.nn.Module] = []  # kept in eval mode (batch-norm statistics)
    if base is not None:
        fresh_heads = finetune.transfer_weights(model, base)
        if freeze_edge:
            finetune.freeze_edge(model)
            frozen = model.edge_modules()
        if per_split_heads:
            finetune.freeze_split_path(model, config.default_split)
            frozen += model.split_path_modules(config.default_split)
        if len(splits) > 1:
            # The layers after a split see a different bottleneck's output at each step, so
            # running statistics averaged over the splits fit none of them (the model trains
            # well and evaluates at chance). Keep the base's statistics everywhere but in the
            # new bottlenecks (those learn to feed the shared layers what they expect) and
            # the new per-split necks and heads (each sees its own split only).
            new = tuple(f"bottlenecks.{s}." for s, c in config.bottlenecks.items()
                        if c and not base.config.bottlenecks.get(s))
            new += tuple(f"{part}.{s}." for s in config.per_split_heads
                         if s not in base.config.per_split_heads
                         for part in ("split_necks", "split_heads"))
            # New neck steps too; a split's own server stages keep the base's statistics (with
            # their own, the s8 path of models/default ended 4x further from the default's
            # outputs on held-out frames than with them: efficientnet's batch-norm momentum
            # 0.01 leaves the running statistics behind the weights; docs/TRAINING.md).
            new += tuple(f"split_necks.{s}.refine." for s in config.per_split_server
                         if s not in base.config.per_split_server)
            fixed_statistics = [m for name, m in model.named_modules()
                                if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)
                                and not name.startswith(new)]
    model = model.to(dev)
    if dev.type == "cuda":
        model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    tasks = get_tasks(config.tasks)
    criterion = MultiTaskLoss(config.tasks, weighting=weighting).to(dev)
    teacher = None
    if distill and fresh_heads:
        raise ValueError(f"distillation needs the base's class lists (heads "
                         f"{', '.join(fresh_heads)} would start afresh)")
    if distill and base is not None:
        teacher = base.to(dev).eval().requires_grad_(False)
    step_module = _TrainStep(model, criterion, amp=dev.type == "cuda" and precision == "bf16",
                             every_output=world.size > 1, teacher=teacher, distill=distill)
    backbone = ("backbone.", "split_stages.")  # the backbone's layers, copies included
    params: list[dict[str, Any]] = [
        {"params": [p for n, p in model.named_parameters()
                    if n.startswith(backbone) and p.requires_grad], "lr": lr * 0.5},
        {"params": [p for n, p in model.named_parameters()
                    if not n.startswith(backbone) and p.requires_grad]},
        {"params": criterion.parameters(), "weight_decay": 0.0}]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=1e-4)
    runner: nn.Module = step_module
    if world.size > 1:
        # Unused parameters: the other splits' bottlenecks, heads of tasks a batch lacks.
        runner = DistributedDataParallel(
            step_module, device_ids=[dev.index or 0] if dev.type == "cuda" else None,
            find_unused_parameters=True)
    weights = _sampling_weights(frames)
    n = len(frames)
    steps_per_epoch = max(1, n // batch_size)
    total_steps = min(epochs * steps_per_epoch, max_steps or 10 ** 9)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=[lr * 0.5, lr, lr], total_steps=total_steps, pct_start=0.1)
    gen = torch.Generator(device=dev).manual_seed(seed)  # augmentation
    header = ["epoch", "step", "loss", *config.tasks, "lr", "seconds"]
    state = _Progress()
    last = out_dir / CHECKPOINT
    if resume and last.exists():
        ck = torch.load(last, map_location=dev, weights_only=False)
        model.load_state_dict(ck["model"])
        criterion.load_state_dict(ck["criterion"])
        opt.load_state_dict(ck["opt"])
        sched.load_state_dict(ck["sched"])
        gen.set_state(ck["aug_rng"].to(gen.get_state().device))
        split_gen.set_state(ck["split_rng"])
        torch.set_rng_state(ck["torch_rng"])
        state = _Progress(**ck["state"])

    def checkpoint() -> None:
        if not world.main:
            return
        buf = io.BytesIO()
        torch.save({"model": model.state_dict(), "criterion": criterion.state_dict(),
                    "opt": opt.state_dict(), "sched": sched.state_dict(),
                    "aug_rng": gen.get_state().cpu(), "split_rng": split_gen.get_state(),
                    "torch_rng": torch.get_rng_state(), "state": dataclasses.asdict(state)}, buf)
        atomic_write_bytes(last, buf.getvalue())

    if progress and world.main:
        print(f"training: world size {world.size} "
              f"({'one process' if world.size == 1 else 'DistributedDataParallel'}), "
              f"{n} frames, global batch {batch_size}, {workers} loader workers per process, "
              f"{'bf16 autocast' if step_module.amp else 'fp32'} on {dev.type}", flush=True)
    t0 = time.time() - state.seconds
    local = batch_size // world.size
    stop = False
    while state.epoch < epochs and not stop:
        epoch = state.epoch
        model.train()
        for module in frozen + fixed_statistics:  # their batch-norm statistics stay
            module.eval()
        batches = EpochBatches(n, batch_size, steps_per_epoch, weights, seed, epoch, world,
                               first=state.batch)
        bar = tqdm(frame_batches(frames, batches, collate_tensors, workers),
                   total=len(batches), desc=f"epoch {epoch + 1}/{epochs}",
                   disable=None if progress and world.main else True, leave=False)
        for cpu_batch in bar:
            if state.step >= total_steps:
                break
            batch = _to_device(cpu_batch, dev)
            loss, parts = _step(runner, batch, config, tasks, gen, dev, step_splits, split_gen,
                                (batch_size, world.rank * local))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            opt.step()
            sched.step()
            state.step += 1
            state.batch += 1
            values = _logged(loss, parts, config.tasks, world, dev)
            state.add(values)
            bar.set_postfix(loss=f"{values['loss']:.3f}")
            stop = _out_of_time(time_budget_s, t0, world, dev)
            state.seconds = time.time() - t0
            if stop or state.step >= total_steps:
                break
            if checkpoint_every and state.step % checkpoint_every == 0:
                checkpoint()
        mean = state.mean()
        state.rows.append([str(epoch), str(state.step), f"{mean.get('loss', 0):.4f}",
                              *[f"{mean[t]:.4f}" if t in mean else "" for t in config.tasks],
                              f"{sched.get_last_lr()[1]:.2e}", f"{time.time() - t0:.1f}"])
        state.epoch, state.batch, state.sums, state.counts = epoch + 1, 0, {}, {}
        if state.step >= total_steps:
            stop = True
        checkpoint()
        if world.main:
            _write_log(out_dir / "train_log.csv", header, state.rows)
        if progress and world.main:
            print(f"epoch {epoch + 1}: loss {mean.get('loss', 0):.3f} "
                  + " ".join(f"{t} {mean[t]:.3f}" for t in config.tasks if t in mean)
                  + f" ({time.time() - t0:.0f}s)", flush=True)
    model.eval()
    if not world.main:
        return {}
    extra: dict[str, Any] = {"trained": {"epochs": epochs, "frames": n, "split": split,
                                         **({"splits": list(splits)} if len(splits) > 1 else {}),
                                         "weighting": weighting, "steps": state.step,
                                         **({"distill": distill} if distill else {}),
                                         "world_size": world.size, "batch_size": batch_size}}
    fp16 = True
    if init_card is not None:
        # The base's storage precision: a frozen edge then stays bit for bit what robots run.
        fp16 = init_card.get("weights_dtype", "float16") == "float16"
        extra["fine_tuned_from"] = {"name": init_card.get("name"),
                                    "fingerprint": init_card["fingerprint"],
                                    "fresh_heads": fresh_heads,
                                    "edge_frozen": freeze_edge,
                                    **({"frozen_split": config.default_split}
                                       if per_split_heads else {})}
        # Per-split heads froze the whole backbone and the default split's bottleneck: where
        # the base had no bottleneck at the new splits, its edges can only send what this model
        # computes bit for bit (the default split, or a split without a bottleneck).
        base_edges_served = per_split_heads and base is not None and not any(
            base.config.bottlenecks.get(s) for s in step_splits)
        if freeze_edge or base_edges_served:
            # Robots keep running the edge they were deployed with: the base's, and those
            # the base itself accepted when it was a frozen-edge fine-tune too.
            extra[ACCEPTS_EDGE] = edge_lineage(init_card)
    with replacing_folder(out_dir / "model") as folder:
        save_model(folder, model, fp16=fp16, extra=extra)
    result = {}
    if val_data is not None and len(as_frames(val_data)):
        val = as_frames(val_data)
        tables = tables_of(config.entropy)
        result["float"] = headline(evaluate(model, val, split, None, dev, workers=workers))
        result["codec"] = headline(evaluate(
            model, val, split, split_default(config.codec, tables, split), dev, workers=workers))
        if len(splits) > 1:
            result["per_split"] = {s: headline(evaluate(
                model, val, s, split_default(config.codec, tables, s), dev, workers=workers))
                for s in splits}
    return result


def _step(runner: nn.Module, batch: dict[str, Any], config: ModelConfig, tasks: list,
          gen: torch.Generator, dev: torch.device, splits: tuple[str, ...],
          split_gen: torch.Generator, part: tuple[int, int]
          ) -> tuple[torch.Tensor, dict[str, float]]:
    """One batch (this process's part of it) augmented, through the network and the loss."""
    x = batch["images"].permute(0, 3, 1, 2).float().div_(255.0)
    bl, ll = list(batch["boxes"]), list(batch["labels"])
    ignores = batch.get("ignore_boxes")
    if ignores is not None and not any(len(ig) for ig in ignores):
        ignores = None
    if ignores is not None:  # same geometry as the boxes, split off again below
        bl = [torch.cat([b, ig.reshape(-1, 4).float()]) for b, ig in zip(bl, ignores)]
        ll = [torch.cat([lab, lab.new_full((len(ig),), IGNORE_LABEL)])
              for lab, ig in zip(ll, ignores)]
    x, s, d, bl, ll, zoom = augment_batch(x, batch["seg"], batch["depth"], bl, ll,
                                          generator=gen, part=part)
    aug = {"image": x, "seg": s, "depth": d, "boxes": bl, "labels": ll}
    if ignores is not None:
        aug["ignore_boxes"] = [b[lab == IGNORE_LABEL] for b, lab in zip(bl, ll)]
        aug["boxes"] = [b[lab != IGNORE_LABEL] for b, lab in zip(bl, ll)]
        aug["labels"] = [lab[lab != IGNORE_LABEL] for lab in ll]
    targets = {task.name: task.targets(aug, config) for task in tasks}
    if dev.type == "cuda":
        x = x.contiguous(memory_format=torch.channels_last)
    step_split = splits[0] if len(splits) == 1 else \
        splits[int(torch.randint(len(splits), (1,), generator=split_gen))]
    k = batch.get("k")
    focal = frame_focals(None if k is None else k.cpu().numpy(),
                         config.depth_reference_focal, dev)
    labelled = {t: batch[labelled_field(t)].bool() for t in config.tasks
                if labelled_field(t) in batch}
    loss, parts = runner(x, step_split, None if focal is None else focal * zoom, targets,
                         labelled)
    return loss, parts


def _logged(loss: torch.Tensor, parts: dict[str, float], tasks: Sequence[str],
            world: World, dev: torch.device) -> dict[str, float]:
    """The step's loss and task losses, averaged over the processes (a task only over the
    processes whose part of the batch had it)."""
    values = torch.tensor([float(loss.detach())] + [parts.get(t, 0.0) for t in tasks]
                          + [1.0] + [float(t in parts) for t in tasks], dtype=torch.float64)
    values = mean_over_world(values.to(dev), world).cpu()
    m = len(tasks) + 1
    sums, present = values[:m], values[m:]
    return {name: float(sums[i] / present[i]) for i, name in enumerate(["loss", *tasks])
            if present[i] > 0}


def _out_of_time(budget_s: float | None, t0: float, world: World, dev: torch.device) -> bool:
    """Whether the time budget is spent, decided by the first process for all."""
    if not budget_s:
        return False
    flag = torch.tensor([float(time.time() - t0 > budget_s)], device=dev)
    if world.size > 1:
        torch.distributed.broadcast(flag, 0)
    return bool(flag.item())
