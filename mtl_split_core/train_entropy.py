"""Entropy-coded codecs for a trained model: fine-tune its split bottleneck with a rate term
and learn the entropy model (``model/entropy_model.py``), then freeze the tables into a new
model card (codecs ``eb-<k>/1``).

Everything but the split's bottleneck (its edge-side down conv and server-side up conv) and the
entropy model stays frozen, so the backbone prefix is run once per frame up front and the steps
run only bottleneck -> coding -> server half: cheap enough for a CPU, fast on a GPU.

Loss, summed over the operating points k: ``distortion_k + lambda_k * kilobytes_k`` (+ the
anchor below). ``lambda_k`` follows a target size per point (dual ascent on log lambda: it grows
while the point sends more than its target), so one run lands its points where they were asked
for. Every task must keep its accuracy, so the distortion weighs the tasks as the trained model
did, not by the size of their losses:

- task losses on the labels, each divided by the unsplit model's own loss on the training
  frames: at the optimum of uncertainty weighting (Kendall et al. 2018), exp(-s_t) = 1 / L_t,
  so these are the trained model's task weights, frozen;
- ``distill`` x the distance of each task's outputs to the unsplit model's, every task alike:
  segmentation KL at temperature 2 and depth |log ratio| (relative to the task's own loss,
  the same units), other outputs mean squared error over the teacher's variance;
- ``anchor`` x the distance of the unquantized bottleneck's server input to the unsplit
  model's (the float network: what q4 and the high rates see), which one shared bottleneck
  would otherwise give up for the low rates.

Only the points whose target lies within ``shape_bytes`` pull the bottleneck (the range the
codecs are meant for): the others learn their gains and densities on it as it is, so a very
low point's large lambda cannot coarsen the bottleneck every point shares.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from mtl_split_core.entropy_tables import MAX_ALPHABET, EntropyTables, tables_of
from mtl_split_core.errors import InputError
from mtl_split_core.evaluate import evaluate, headline
from mtl_split_core.model.bottleneck import Bottleneck
from mtl_split_core.model.card import ACCEPTS_EDGE, edge_lineage, load_model, save_model
from mtl_split_core.model.context_fit import fit_context
from mtl_split_core.model.entropy_model import GAIN_BOUNDS, EntropyModel
from mtl_split_core.model.losses import MultiTaskLoss
from mtl_split_core.model.network import MultiTaskSplitNet
from mtl_split_core.model.temporal_context_fit import fit_temporal_context
from mtl_split_core.tasks import get_tasks, labelled_field
from mtl_split_core.tasks.depth import frame_focals

# Bytes per frame beyond the density's estimate: the 6-byte header and the coder's state.
OVERHEAD_BYTES = 10.0
# Dense where the codecs compete with image upload (WebP of the model input: ~1-2 KB).
DEFAULT_TARGETS = (300, 450, 600, 800, 1200, 3000)
# The byte range whose points shape the shared bottleneck, and the float network's anchor
# weight (module docstring).
DEFAULT_SHAPE_BYTES = (400.0, 1500.0)
DEFAULT_ANCHOR = 1000.0
# Batches of the teacher's own task losses that set the task weights.
TEACHER_LOSS_BATCHES = 4
LOG_EVERY = 50


def prefix_features(model: MultiTaskSplitNet, images: np.ndarray, split: str,
                    device: torch.device, batch_size: int = 64) -> torch.Tensor:
    """The frozen backbone's output at ``split`` (before the bottleneck) for uint8 (N, H, W, 3)
    frames, float16 on ``device``."""
    i = model.split_names.index(split)
    out = []
    with torch.inference_mode():
        for start in range(0, len(images), batch_size):
            x = torch.from_numpy(images[start:start + batch_size]).to(device)
            x = x.permute(0, 3, 1, 2).float() / 255.0
            out.append(model.backbone.run((x - model.mean) / model.std, 0, i + 1)[-1].half())
    return torch.cat(out)


def calibrate_gains(y: torch.Tensor, targets: Sequence[float]
                    ) -> tuple[list[float], list[float]]:
    """One starting gain per operating point: the multiple of 1/std (per channel, applied as a
    scalar here) whose rounded values' empirical entropy is about the target bytes/frame, and
    the bytes/frame each gain gives. The search stays within ``GAIN_BOUNDS`` (the tables'
    valid gains): features of a tiny scale (an untrained model's are ~1e-6) or constant ones
    cannot reach a target inside it; their point gets the bound's gain and its bytes say so."""
    c = y.shape[1]
    flat = y.detach().float().permute(1, 0, 2, 3).reshape(c, -1).cpu().numpy()
    per_frame = flat.shape[1] / len(y)
    scale = 1.0 / max(float(flat.std()), 1e-12)
    bounds = math.log(GAIN_BOUNDS[0]), math.log(GAIN_BOUNDS[1])

    def within(v: float) -> float:
        return min(max(v, bounds[0]), bounds[1])

    def frame_bytes(gain: float) -> float:
        bits = 0.0
        for row in np.rint(flat * gain):
            _, counts = np.unique(row, return_counts=True)
            p = counts / counts.sum()
            bits += float(-(p * np.log2(p)).sum())
        return bits * per_frame / 8 + OVERHEAD_BYTES

    gains, reached = [], []
    for target in targets:
        lo, hi = within(math.log(scale / 64)), within(math.log(scale * 64))
        for _ in range(30):
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if frame_bytes(math.exp(mid)) < target else (lo, mid)
        gains.append(min(max(math.exp((lo + hi) / 2), GAIN_BOUNDS[0]), GAIN_BOUNDS[1]))
        reached.append(frame_bytes(gains[-1]))
    return gains, reached


def check_features(y: torch.Tensor, split: str) -> None:
    """InputError when no tables can code the bottleneck output ``y`` at ``split``: values
    that are not finite (broken weights), or so large that even the smallest gain puts them
    beyond the tables' symbols. Anything else is coded, if badly (``calibrate_gains``)."""
    finite = torch.isfinite(y)
    if not bool(finite.all()):
        frames = int((~finite).flatten(1).any(1).sum())
        raise InputError(f"the model's bottleneck output at {split} is not finite (NaN/inf) "
                         f"on {frames} of {len(y)} frames: broken weights, nothing to code")
    largest = float(y.abs().max()) if y.numel() else 0.0
    if largest * GAIN_BOUNDS[0] > MAX_ALPHABET / 2:
        raise InputError(f"the model's bottleneck output at {split} reaches |y| = "
                         f"{largest:.3g}: beyond the +-{MAX_ALPHABET // 2} symbols of a table "
                         f"even at the smallest gain {GAIN_BOUNDS[0]:g}")


def _segmentation_kl(out: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """KL(teacher || student) of class logits (N, K, H, W) at ``SEG_TEMPERATURE``, x T^2 (the
    gradient's scale at T = 1), mean over pixels: nats per pixel, as the cross-entropy."""
    t = SEG_TEMPERATURE
    p, q = F.log_softmax(teacher.float() / t, 1), F.log_softmax(out.float() / t, 1)
    return (p.exp() * (p - q)).sum(1).mean() * t * t


def _log_ratio(out: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Mean |log student - log teacher| of positive maps (depth): the depth loss's units."""
    return (torch.log(out.float().clamp_min(1e-6))
            - torch.log(teacher.float().clamp_min(1e-6))).abs().mean()


def _scaled_mse(out: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """MSE(student, teacher) / var(teacher): unit-free whatever the output's units."""
    t = teacher.float()
    return ((out.float() - t) ** 2).mean() / (t.var() + 1e-6)


SEG_TEMPERATURE = 2.0
# Outputs with a distance in the units of their task's loss (then divided by the teacher's
# loss, as the task loss is); any other output: _scaled_mse.
LOSS_UNIT_DISTANCES: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "segmentation": _segmentation_kl, "depth": _log_ratio}


def output_distance(out: Mapping[str, torch.Tensor], teacher: Mapping[str, torch.Tensor],
                    outputs_of: Mapping[str, Sequence[str]],
                    teacher_loss: Mapping[str, float]) -> torch.Tensor:
    """Mean over the tasks (``outputs_of``: task -> its head's outputs) of the mean distance
    of their outputs to the teacher's: every task counts alike, whatever its output count.
    A distance in the task loss's units is divided by the teacher's loss of that task."""
    terms = []
    for task, names in outputs_of.items():
        per = []
        for k in names:
            if k in LOSS_UNIT_DISTANCES and task in teacher_loss:
                per.append(LOSS_UNIT_DISTANCES[k](out[k], teacher[k]) / teacher_loss[task])
            else:
                per.append(_scaled_mse(out[k], teacher[k]))
        terms.append(torch.stack(per).mean())
    return torch.stack(terms).mean()


def head_outputs(model: MultiTaskSplitNet, split: str, run: Callable[..., Any], *args: Any
                 ) -> tuple[dict[str, list[str]], Any]:
    """(task -> the names of the outputs its head returns, seen while ``run(*args)`` runs
    ``model``'s heads at ``split``; what ``run`` returned)."""
    seen: dict[str, list[str]] = {}

    def hook(task: str) -> Callable[..., None]:
        def record(_module: Any, _inputs: Any, result: dict) -> None:  # None: output kept
            seen[task] = list(result)
        return record

    handles = [head.register_forward_hook(hook(task))
               for task, head in model.neck_and_heads(split)[1].items()]
    try:
        result = run(*args)
    finally:
        for h in handles:
            h.remove()
    return seen, result


def task_weights(losses: Mapping[str, Sequence[float]]) -> dict[str, float]:
    """1 / the unsplit model's mean loss per task on the training frames: the weights a
    converged uncertainty weighting gives (d/ds [exp(-s) L + s] = 0 at exp(-s) = 1 / L).
    Tasks never labelled in the batches seen get none (their label loss never runs)."""
    return {t: 1.0 / max(float(np.mean(v)), 1e-3) for t, v in losses.items() if len(v)}


@dataclasses.dataclass
class EntropyTraining:
    """What ``train_entropy`` measured: per point the target, final lambda and estimated
    bytes/frame (running mean), the steps and seconds."""
    targets: list[float]
    lambdas: list[float]
    est_bytes: list[float]
    steps: int
    seconds: float
    calibrated_bytes: list[float] = dataclasses.field(default_factory=list)


def train_entropy(model_path: str | Path, train_data: dict, out_dir: str | Path,
                  targets: Sequence[float] = DEFAULT_TARGETS, device: str = "cpu",
                  batch_size: int = 16, points_per_step: int | None = None,
                  time_budget_s: float = 600.0, max_steps: int | None = None,
                  lr: float = 3e-4, distill: float = 1.0, anchor: float = DEFAULT_ANCHOR,
                  shape_bytes: tuple[float, float] | None = DEFAULT_SHAPE_BYTES,
                  seed: int = 0, name: str | None = None, codec: str | None = None,
                  freeze_bottleneck: bool = False, context: bool = False,
                  val_data: dict | None = None, progress: bool = True,
                  log: Callable[[str], None] = print) -> dict:
    """Fine-tune ``model_path``'s split bottleneck with an entropy model for ``targets``
    (bytes/frame, ascending), write the model with frozen tables to ``out_dir/model`` and
    return ``{"training": EntropyTraining, "val": {codec: headline}}``. ``codec``: the new
    card's default (None: the base's). ``freeze_bottleneck``: only the entropy model learns
    (the bottleneck keeps the base's weights, so its accuracy at high rates is the base's);
    with ``max_steps=0`` the gains stay at their calibration (rate targets) and only the
    densities are fitted: no server half runs, minutes on a CPU. ``distill``, ``anchor``,
    ``shape_bytes``: the module docstring (None: every point pulls the bottleneck).
    ``context``: also fit context tables (codecs ``ebc-<k>/1``, ``add_context_tables``)."""
    torch.manual_seed(seed)
    dev = torch.device(device)
    teacher, base_card = load_model(model_path, dev)
    student, _ = load_model(model_path, dev)
    split = student.config.default_split
    if split not in student.bottlenecks:
        raise InputError(f"the model has no bottleneck at its split {split}: nothing to code")
    if len(train_data["images"]) == 0:
        raise InputError("no training frames")
    targets = sorted(float(t) for t in targets)
    k_points = len(targets)
    bottleneck = cast(Bottleneck, student.bottlenecks[split])
    teacher_bottleneck = cast(Bottleneck, teacher.bottlenecks[split])
    for p in student.parameters():
        p.requires_grad_(False)
    for p in bottleneck.parameters():
        p.requires_grad_(not freeze_bottleneck)
    student.eval()
    teacher.eval()
    shaping = [k for k, t in enumerate(targets) if freeze_bottleneck or shape_bytes is None
               or shape_bytes[0] <= t <= shape_bytes[1]]

    t0 = time.time()
    feats = prefix_features(student, train_data["images"], split, dev)
    n = len(feats)
    with torch.no_grad():
        y0 = torch.cat([bottleneck.encode(feats[i:i + 256].float()) for i in range(0, n, 256)])
    check_features(y0, split)
    channels = y0.shape[1]
    gains, calibrated = calibrate_gains(y0[:512], targets)
    entropy = EntropyModel(channels, gains).to(dev)
    log(f"{n} frames, features in {time.time() - t0:.0f}s; start gains "
        f"{[float(f'{g:.4g}') for g in gains]}")
    for k, (target, got) in enumerate(zip(targets, calibrated)):
        if not 0.8 <= got / target <= 1.25:
            log(f"eb-{k}/1: {got:.0f} B/frame instead of the target {target:g} at the "
                f"nearest gain the tables allow ({GAIN_BOUNDS[0]:.4g}..{GAIN_BOUNDS[1]:.4g}; "
                f"bottleneck output std {float(y0.float().std()):.3g}): kept at that size")
    _fit_density(entropy, y0, dev)
    log(f"densities fitted ({time.time() - t0:.0f}s)")

    tasks = get_tasks(student.config.tasks)
    seg = torch.from_numpy(train_data["seg"]).to(dev)
    depth = torch.from_numpy(train_data["depth"]).to(dev)
    boxes = [torch.from_numpy(b).to(dev) for b in train_data["boxes"]]
    labels = [torch.from_numpy(v).to(dev) for v in train_data["labels"]]
    labelled = {t: torch.from_numpy(np.asarray(train_data[labelled_field(t)], bool)).to(dev)
                for t in student.config.tasks if labelled_field(t) in train_data}
    focals = frame_focals(train_data.get("k"), student.config.depth_reference_focal, dev)
    out_hw = (train_data["images"].shape[1], train_data["images"].shape[2])
    # Detection targets read the batch's image size and device only.
    shape_of_images = torch.empty((batch_size, 1, *out_hw), dtype=torch.uint8, device=dev)
    gen = torch.Generator().manual_seed(seed)
    amp = dev.type == "cuda"

    def draw() -> tuple[torch.Tensor, dict[str, Any], dict[str, Any]]:
        """A batch: features, per-task targets, labelled masks (and the focal lengths)."""
        idx = torch.randint(n, (batch_size,), generator=gen)
        idx_dev = idx.to(dev)
        batch = {"image": shape_of_images, "seg": seg[idx_dev], "depth": depth[idx_dev],
                 "boxes": [boxes[i] for i in idx.tolist()],
                 "labels": [labels[i] for i in idx.tolist()]}
        return (feats[idx_dev].float(),
                {task.name: task.targets(batch, student.config) for task in tasks},
                {"labelled": {t: m[idx_dev] for t, m in labelled.items()},
                 "focal": None if focals is None else focals[idx_dev]})

    def teacher_pass(f: torch.Tensor, focal: Any) -> tuple[torch.Tensor, dict]:
        """The unsplit model on features ``f``: its server input (float32, as the student's
        that the anchor compares) and outputs."""
        with torch.no_grad():
            z = teacher_bottleneck.encode(f)
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=amp):
                out = teacher.server(z, split, out_hw=out_hw, focal=focal)
            return teacher_bottleneck.decode(z), out

    # The teacher's task losses on a few batches: the frozen task weights (``task_weights``).
    probe = MultiTaskLoss(student.config.tasks, weighting="fixed").to(dev)
    seen: dict[str, list[float]] = {t: [] for t in student.config.tasks}
    outputs_of: dict[str, list[str]] = {}
    for i in range(TEACHER_LOSS_BATCHES):
        f, targets_t, extra = draw()
        if i == 0:
            outputs_of, (_, teacher_out) = head_outputs(teacher, split, teacher_pass, f,
                                                        extra["focal"])
        else:
            _, teacher_out = teacher_pass(f, extra["focal"])
        _, per_task = probe(teacher_out, targets_t, extra["labelled"])
        for t, v in per_task.items():
            seen[t].append(v)
    weights = task_weights(seen)
    teacher_loss = {t: 1.0 / w for t, w in weights.items()}
    criterion = MultiTaskLoss(student.config.tasks, weighting="fixed",
                              fixed_weights=weights).to(dev)
    log(f"task weights (1 / the unsplit model's loss) "
        f"{ {t: round(w, 3) for t, w in weights.items()} }; points shaping the bottleneck "
        f"{[] if freeze_bottleneck else [f'eb-{k}' for k in shaping]}")

    opt = torch.optim.Adam([
        {"params": [p for p in bottleneck.parameters() if p.requires_grad], "lr": lr},
        {"params": [entropy.log_gain], "lr": 3e-3},
        {"params": list(entropy.density.parameters()), "lr": 3e-3}])
    base_lrs = [g["lr"] for g in opt.param_groups]
    entropy_params = [entropy.log_gain, *entropy.density.parameters()]
    log_lam = torch.full((k_points,), math.log(0.05))
    est = torch.tensor(targets)
    step, start = 0, time.time()
    bar = tqdm(total=max_steps, disable=not progress, desc="entropy", mininterval=5)
    while True:
        frac = (time.time() - start) / time_budget_s
        if frac >= 1 or (max_steps is not None and step >= max_steps):
            break
        for g, base in zip(opt.param_groups, base_lrs):  # cosine over the time budget
            g["lr"] = base * 0.5 * (1 + math.cos(math.pi * min(frac, 1.0)))
        points = list(range(k_points)) if points_per_step is None else \
            torch.randperm(k_points, generator=gen)[:points_per_step].tolist()
        f, targets_t, extra = draw()
        teacher_mid, teacher_out = teacher_pass(f, extra["focal"])
        y = bottleneck.encode(f)
        # Per point: the loss of a point that shapes the bottleneck backpropagates into it;
        # the others' only into the entropy model (their gains and densities).
        shaped, free = torch.zeros((), device=dev), torch.zeros((), device=dev)
        if not freeze_bottleneck and anchor > 0:  # the float network stays the unsplit one
            shaped = shaped + anchor * _scaled_mse(bottleneck.decode(y), teacher_mid)
        entropy.train()
        for k in points:
            y_hat, bits = entropy(y if k in shaping else y.detach(), k)
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=amp):
                out = student.server(y_hat, split, out_hw=out_hw, focal=extra["focal"])
            task_loss, _ = criterion(out, targets_t, extra["labelled"])
            kbytes = (bits.mean() / 8 + OVERHEAD_BYTES) / 1000
            term = task_loss + distill * output_distance(out, teacher_out, outputs_of,
                                                         teacher_loss) \
                + math.exp(float(log_lam[k])) * kbytes
            if k in shaping:
                shaped = shaped + term
            else:
                free = free + term
            with torch.no_grad():  # dual ascent: more bytes than the target -> larger lambda
                b = float(kbytes) * 1000
                est[k] = 0.98 * est[k] + 0.02 * b
                log_lam[k] += 0.03 * math.log(b / targets[k])
                log_lam[k] = log_lam[k].clamp(-12, 8)
        opt.zero_grad(set_to_none=True)
        if shaped.requires_grad:
            shaped.backward()
        if free.requires_grad:
            free.backward(inputs=entropy_params)
        total = shaped.detach() + free.detach()
        torch.nn.utils.clip_grad_norm_([p for g in opt.param_groups for p in g["params"]], 5.0)
        opt.step()
        entropy.clamp_gains_()
        step += 1
        bar.update(1)
        if step % LOG_EVERY == 0:
            log(f"step {step} ({time.time() - start:.0f}s): loss {float(total):.3f}, bytes "
                f"{[round(float(v)) for v in est]}, lambda "
                f"{[round(math.exp(float(v)), 4) for v in log_lam]}")
    bar.close()
    entropy.eval()
    result = EntropyTraining(targets, [math.exp(float(v)) for v in log_lam],
                             [float(v) for v in est], step, time.time() - start, calibrated)
    return {"training": result, **_save(student, teacher, base_card, entropy, feats, split,
                                        out_dir, name, codec, result, n, seed, val_data, dev,
                                        context)}


def _fit_density(entropy: EntropyModel, y: torch.Tensor, dev: torch.device,
                 steps: int = 200) -> None:
    """Fit the densities to the starting bottleneck (gains fixed) before the joint steps, so
    the first rate gradients are not those of a random density."""
    opt = torch.optim.Adam(entropy.density.parameters(), lr=1e-2)
    gen = torch.Generator().manual_seed(1)
    entropy.train()
    for _ in range(steps):
        idx = torch.randint(len(y), (min(16, len(y)),), generator=gen).to(dev)
        bits = entropy.total_bits(y[idx]) / len(idx)  # per frame, as the joint steps
        opt.zero_grad(set_to_none=True)
        bits.backward()
        entropy.log_gain.grad = None
        opt.step()


def _save(student: MultiTaskSplitNet, teacher: MultiTaskSplitNet, base_card: dict,
          entropy: EntropyModel, feats: torch.Tensor, split: str, out_dir: str | Path,
          name: str | None, codec: str | None, result: EntropyTraining, n: int, seed: int,
          val_data: dict | None, dev: torch.device, context: bool = False) -> dict:
    """Freeze the tables on the bottleneck as it will be stored (the base's dtype), write the
    card."""
    bottleneck = cast(Bottleneck, student.bottlenecks[split])
    fp16 = base_card.get("weights_dtype", "float16") == "float16"
    with torch.no_grad():
        for p in bottleneck.parameters():
            p.copy_(p.half().float() if fp16 else p)
        y = torch.cat([bottleneck.encode(feats[i:i + 256].float())
                       for i in range(0, len(feats), 256)])
    block = entropy.freeze(split, y)
    if context:
        block = fit_context(cast(EntropyTables, tables_of(block)), y.cpu().numpy())
    student.config = dataclasses.replace(
        student.config, entropy=block, name=name or f"{base_card['name']}_eb",
        codec=codec or student.config.codec)
    frozen = not any(p.requires_grad for p in bottleneck.parameters())
    trained: dict[str, Any] = {"frames": n, "seed": seed, "steps": result.steps,
                               "bottleneck_frozen": frozen, "seconds": round(result.seconds, 1),
                               "target_bytes": result.targets,
                               "calibrated_bytes": [round(v, 1) for v in result.calibrated_bytes]}
    if result.steps:  # what the joint steps reached (without them: the calibrated gains)
        trained |= {"est_bytes": [round(v, 1) for v in result.est_bytes],
                    "lambda_per_kb": [round(v, 5) for v in result.lambdas]}
    extra: dict[str, Any] = {
        "fine_tuned_from": {"name": base_card.get("name"), "fingerprint": base_card["fingerprint"],
                            "fresh_heads": [], "edge_frozen": frozen},
        "trained_entropy": trained}
    if "trained" in base_card:  # how the network was trained: which splits it serves
        extra["trained"] = base_card["trained"]
    if frozen:  # the edge is the base's bit for bit: its robots' packets are served as they are
        extra[ACCEPTS_EDGE] = edge_lineage(base_card)
    card = save_model(Path(out_dir) / "model", student, fp16=fp16, extra=extra)
    torch.save(entropy.state_dict(), Path(out_dir) / "entropy_model.pt")
    val: dict[str, Any] = {}
    if val_data is not None and len(val_data["images"]):
        tables = tables_of(block)
        assert tables is not None
        # The new card's own float network and codecs, and the unsplit model's float network:
        # what the fine-tune may have cost every task.
        val["base float"] = headline(evaluate(teacher, val_data, split, None, dev))
        val["float"] = headline(evaluate(student, val_data, split, None, dev))
        for c in ("q4-zstd/1", *tables.codec_ids):
            r = evaluate(student, val_data, split, c, dev)
            val[c] = {"bytes_per_frame": r.get("bytes_per_frame"), **headline(r)}
    return {"card": card, "val": val}


def add_context_tables(model_path: str | Path, train_data: dict, out_dir: str | Path,
                       name: str | None = None, codec: str | None = None,
                       log: Callable[[str], None] = print) -> dict:
    """A copy of the model at ``model_path`` (which has entropy tables) with context tables
    fitted to ``train_data``'s frames (``model/context_fit.py``): codecs ``ebc-<k>/1``, the
    very symbols of its ``eb-<k>/1`` with fewer bytes. Nothing else changes (weights, gains,
    eb tables), so the edge is the base's: its robots' packets are served as they are.
    Returns the new card."""
    model, base_card, tables = _with_tables(model_path)
    if len(train_data["images"]) == 0:
        raise InputError("no training frames")
    t0 = time.time()
    y = _split_tensors(model, train_data["images"], tables.split)
    log(f"{len(y)} frames' split tensors {tuple(y.shape[1:])} in {time.time() - t0:.0f}s")
    block = fit_context(tables, y)
    log(f"context tables fitted ({time.time() - t0:.0f}s)")
    return _save_tables(model, base_card, block, out_dir, name or f"{base_card['name']}c",
                        codec, "trained_context", {"frames": len(y)})


def add_temporal_context_tables(model_path: str | Path, sequences: dict, points: Sequence[int],
                                out_dir: str | Path, name: str | None = None,
                                codec: str | None = None,
                                log: Callable[[str], None] = print) -> dict:
    """A copy of the model at ``model_path`` (which has context tables) with temporal context
    tables for operating ``points`` fitted to ``sequences`` (a dataset dict with ``group_of``:
    the sequence of each frame, frames in order; ``model/temporal_context_fit.py``): the
    conditional temporal codecs ``t<N>-c<H>-ebc-<k>/1``. Nothing else changes, as for
    ``add_context_tables``. Returns the new card."""
    model, base_card, tables = _with_tables(model_path)
    if not tables.has_context:
        raise InputError(f"{model_path}: the model has no context tables (ebc; train-eb "
                         f"--context-only first)")
    if bad := [k for k in points if not 0 <= k < len(tables.context)]:
        raise InputError(f"operating points {bad}: the model has {len(tables.context)}")
    groups = np.asarray(sequences["group_of"])
    t0 = time.time()
    y = _split_tensors(model, sequences["images"], tables.split)
    runs = [y[groups == g] for g in dict.fromkeys(groups.tolist())]
    if not runs or min(len(r) for r in runs) < 2:
        raise InputError("temporal context tables need sequences of at least 2 frames")
    log(f"{len(runs)} sequences, {len(y)} frames' split tensors in {time.time() - t0:.0f}s")
    block = fit_temporal_context(tables, runs, points)
    log(f"temporal context tables fitted ({time.time() - t0:.0f}s)")
    return _save_tables(model, base_card, block, out_dir, name or f"{base_card['name']}t",
                        codec, "trained_temporal_context",
                        {"sequences": len(runs), "frames": len(y), "points": list(points)})


def _with_tables(model_path: str | Path) -> tuple[MultiTaskSplitNet, dict, EntropyTables]:
    model, base_card = load_model(model_path, "cpu")
    tables = tables_of(model.config.entropy)
    if tables is None:
        raise InputError(f"{model_path}: the model has no entropy tables (train-eb first)")
    return model, base_card, tables


def _split_tensors(model: MultiTaskSplitNet, images: np.ndarray, split: str) -> np.ndarray:
    """The edge's float32 outputs (N, C, H, W) at ``split`` of uint8 images (N, H, W, 3)."""
    with torch.inference_mode():
        return torch.cat([model.edge(torch.from_numpy(images[i:i + 64]).permute(0, 3, 1, 2)
                                     .float() / 255.0, split).float()
                          for i in range(0, len(images), 64)]).numpy()


def _save_tables(model: MultiTaskSplitNet, base_card: dict, block: dict, out_dir: str | Path,
                 name: str, codec: str | None, key: str, about: dict) -> dict:
    """The model with the new entropy ``block`` saved as a card whose edge is the base's
    (``key``: the card's record of what was fitted, ``about`` it)."""
    model.config = dataclasses.replace(model.config, entropy=block, name=name,
                                       codec=codec or model.config.codec)
    kept = ("trained", "fine_tuned_from", "trained_entropy", "trained_data", "trained_context")
    extra: dict[str, Any] = {k: base_card[k] for k in kept if k in base_card}
    extra[key] = {**about, "from": {"name": base_card["name"],
                                    "fingerprint": base_card["fingerprint"]}}
    extra[ACCEPTS_EDGE] = edge_lineage(base_card)
    fp16 = base_card.get("weights_dtype", "float16") == "float16"
    return save_model(Path(out_dir) / "model", model, fp16=fp16, extra=extra)
