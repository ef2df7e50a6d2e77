"""`mtl-split train`: multi-task (or single-task) training from one or more data sets, from
scratch or fine-tuning an existing model (``--init``, optionally ``--freeze-edge``)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from mtl_split_core.backbones import has_pretrained
from mtl_split_core.cli.arguments import (
    image_size,
    non_negative_float,
    non_negative_int,
    output_folder,
    positive_int,
)
from mtl_split_core.cli.datasets import DATA_HELP
from mtl_split_core.codec import CODECS
from mtl_split_core.errors import InputError
from mtl_split_core.tasks import DEFAULT_TASKS
from mtl_split_core.train import PRECISIONS

if TYPE_CHECKING:
    from mtl_split_core.data.frames import Frames
    from mtl_split_core.data.sources.loading import LoadedData
    from mtl_split_core.distributed import World
    from mtl_split_core.model.config import ModelConfig

# Defaults of a model trained from scratch; with --init these come from the model instead.
CONTRACT_DEFAULTS: dict[str, Any] = {
    "backbone": "efficientnet_lite0", "bottleneck": 16, "quant_bits": 8, "codec": "q8-zstd/1",
    "size": (320, 240), "split": "s16"}
ClassNames = tuple[tuple[str, ...], tuple[str, ...]]  # (detection, segmentation) classes


def channel_list(text: str) -> list[int]:
    """--bottleneck: '16' or '8,16,32' (non-negative integers)."""
    try:
        values = [int(v) for v in text.split(",")]
    except ValueError:
        values = []
    if not values or any(v < 0 for v in values):
        raise argparse.ArgumentTypeError(f"{text!r}: expected channels like 16 or 8,16,32")
    return values


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", "--shards", dest="data", action="append", required=True,
                   metavar="[FORMAT:]PATH[@WEIGHT]", help=DATA_HELP)
    p.add_argument("--class-map", default=None, metavar="FILE",
                   help='JSON {"source class": "model class" | null} applied to every source')
    p.add_argument("--out", type=output_folder, required=True,
                   help="output folder (model/, train_log.csv)")
    p.add_argument("--init", default=None, metavar="MODEL",
                   help="fine-tune this model (folder or name): keeps its backbone, "
                   "bottlenecks and split contract; heads whose classes changed start afresh")
    p.add_argument("--distill", type=non_negative_float, default=0.0, metavar="WEIGHT",
                   help="with --init: also learn the --init model's outputs at its own split "
                        "(weight of that term; 1 is a start), so adding splits keeps its accuracy")
    p.add_argument("--per-split-heads", action="store_true",
                   help="with --init: each --split but the model's default gets a neck and "
                   "heads of its own (copies of the shared ones) and only those splits train; "
                   "every weight the default split uses stays bit for bit")
    p.add_argument("--per-split-server", action="store_true",
                   help="--per-split-heads, and each of those splits also gets the backbone "
                   "stages after it (trainable copies) and a neck with learned upsampling: its "
                   "whole server half adapts to its bottleneck; the default split stays bit "
                   "for bit")
    p.add_argument("--freeze-edge", action="store_true",
                   help="with --init: the edge part keeps its weights bit for bit, so robots "
                   "running the old model's edge are served by the new model")
    p.add_argument("--backbone", default=None,
                   help=f"default {CONTRACT_DEFAULTS['backbone']} (with --init: the model's)")
    p.add_argument("--split", default=None,
                   help="split point to train at (s4, s8, s16, s32), or with --init a comma "
                   "list (s16,s8,s32): one model for every split, each step at a random one "
                   "of them; the first is the default split; default s16 or the --init "
                   "model's")
    p.add_argument("--bottleneck", type=channel_list, default=None,
                   help="bottleneck channels at the split(s): one number for all, or a comma "
                   "list matching --split; 0 = none; default 16")
    p.add_argument("--tasks", default=None,
                   help=f"comma-separated subset (STL: one); default {','.join(DEFAULT_TASKS)} "
                   "or the --init model's")
    p.add_argument("--quant-bits", type=int, default=None, choices=(0, 4, 8),
                   help="fake quantization bits at the split while training (0 = off; "
                   "default 8)")
    p.add_argument("--codec", default=None, choices=CODECS, help="default q8-zstd/1")
    p.add_argument("--weighting", default="uncertainty", choices=("uncertainty", "fixed"))
    p.add_argument("--epochs", type=positive_int, default=30)
    p.add_argument("--batch-size", type=positive_int, default=32)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--size", type=image_size, default=None,
                   help="network input WxH (default 320x240)")
    p.add_argument("--device", default="auto",
                   help="auto, cpu, cuda; under torchrun each process takes cuda:LOCAL_RANK")
    p.add_argument("--workers", type=non_negative_int, default=4,
                   help="DataLoader processes decoding frames, per training process "
                   "(0 = in the training process; default 4)")
    p.add_argument("--precision", default="bf16", choices=PRECISIONS,
                   help="bf16 = bfloat16 autocast on CUDA (default); fp32 = none. The CPU "
                   "always trains in fp32")
    p.add_argument("--checkpoint-every", type=non_negative_int, default=0, metavar="STEPS",
                   help="also checkpoint (out/last.pt) every N steps within an epoch, so "
                   "--resume after a kill loses at most N steps (default 0: epoch ends only)")
    p.add_argument("--memory-budget", type=non_negative_float, default=None, metavar="MB",
                   help="refuse (exit 2) a data set whose loader would need more host memory "
                   "than this: the frame index plus the batches in flight (docs/TRAINING.md)")
    p.add_argument("--no-pretrained", action="store_true", help="random backbone init")
    p.add_argument("--resume", action="store_true",
                   help="continue from out/last.pt where it stopped (mid-epoch included)")
    p.add_argument("--max-steps", type=positive_int, default=None)
    p.add_argument("--time-budget", type=non_negative_float, default=None,
                   help="stop training after this many seconds (then save and evaluate)")
    p.add_argument("--name", default=None, help="model card name")
    p.add_argument("--depth-reference-focal", type=non_negative_float, default=None,
                   help="focal length (input px) the depth head is calibrated to; default: the "
                   "median of the training frames; 0: depth ignores the camera's focal length")


def _init_config(model: str) -> tuple[Path, ModelConfig]:
    """The --init model's folder and configuration (card only: train() loads the weights)."""
    from mtl_split_core.model.card import ModelLoadError, config_from_card, read_card
    from mtl_split_core.runtime.model_files import resolve_model_path

    try:
        path = resolve_model_path(model)
        return path, config_from_card(read_card(path))
    except (FileNotFoundError, ModelLoadError) as err:
        raise InputError(f"--init {model}: {err}") from None


def _check_contract_options(args: argparse.Namespace) -> None:
    """With --init the split contract is the model's: options that would change it are errors
    rather than silently ignored."""
    given = [name for name in ("backbone", "quant_bits", "codec", "size",
                               "depth_reference_focal") if getattr(args, name) is not None]
    if given:
        flags = ", ".join("--" + name.replace("_", "-") for name in given)
        raise InputError(f"{flags}: fine-tuning keeps the --init model's split contract; "
                         "leave these out")


def _labels_any(data: Frames, task: str) -> bool:
    """Whether some frame may carry ``task``'s label."""
    from mtl_split_core.train import labelled_frames

    return bool(labelled_frames(data, (task,)).any())


def _median_focal(frames: Frames, most: int = 256) -> float:
    """The median fy over up to ``most`` evenly spaced frames whose intrinsics are known
    (decoding every frame of a large data set to find it would take an epoch); 0 = none."""
    from mtl_split_core.data.frames import checked

    picks = np.unique(np.linspace(0, len(frames) - 1, min(most, len(frames))).astype(int))
    fy = np.array([float(np.asarray(checked(frames[int(i)]).get("k", [np.nan] * 9),
                                    np.float64).reshape(9)[4]) for i in picks])
    fy = fy[np.isfinite(fy) & (fy > 0)]
    return round(float(np.median(fy)), 2) if len(fy) else 0.0


def load_data(values: list[str], split: str, input_size: tuple[int, int],
              class_map_path: str | None = None, classes: ClassNames | None = None
              ) -> LoadedData:
    """``--data`` (repeatable) + ``--class-map`` for ``split`` at ``input_size``; ``classes``
    = (detection, segmentation) lists to map onto (an existing model's), else the sources'."""
    from mtl_split_core.cli.datasets import load_data_args
    from mtl_split_core.data.sources.loading import ClassLists

    return load_data_args(values, split, input_size, class_map_path,
                          classes=None if classes is None else ClassLists(*classes))


def _class_lists(args: argparse.Namespace, loaded: LoadedData, base: ModelConfig | None,
                 size: tuple[int, int]) -> tuple[LoadedData, ClassNames]:
    """The model's class lists (and the training data, mapped onto them): the data's; when
    fine-tuning, the --init model's wherever the data allows (its heads keep their weights)."""
    lists = (tuple(loaded.detection_classes), tuple(loaded.segmentation_classes))
    if base is None:
        return loaded, lists
    base_lists = (base.detection_classes, base.segmentation_classes)
    if lists == base_lists:
        return loaded, lists
    if not any(_labels_any(loaded.data, t) for t in ("detection", "segmentation")):
        return loaded, base_lists  # no class labels in the data: its lists mean nothing
    if set(lists[0]) <= set(base_lists[0]) and set(lists[1]) <= set(base_lists[1]):
        # Classes the model knows, in another order: map the data onto the model's lists.
        return load_data(args.data, "train", size, args.class_map, base_lists), base_lists
    return loaded, lists  # new classes: the heads they change start afresh


def run(args: argparse.Namespace) -> int:
    from mtl_split_core.distributed import close_world, init_world
    from mtl_split_core.runtime.device import resolve_device

    device = resolve_device(args.device)
    world = init_world(device.type)
    try:
        if not world.main:  # one process speaks; errors still reach stderr from every one
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - for the process's life
        if world.size > 1 and device.type == "cuda":
            device = torch.device("cuda", world.local_rank)
        return _run(args, str(device), world)
    finally:
        close_world(world)


def _run(args: argparse.Namespace, device: str, world: World) -> int:
    import dataclasses

    from mtl_split_core.data.frames import loader_memory
    from mtl_split_core.data.sources.base import SourceError
    from mtl_split_core.model import ModelLoadError, finetune
    from mtl_split_core.model.config import SPLIT_NAMES, ModelConfig, ModelConfigError
    from mtl_split_core.output_folder import atomic_write_text
    from mtl_split_core.train import labelled_frames, train

    init_path, base = (None, None) if args.init is None else _init_config(args.init)
    if args.freeze_edge and base is None:
        raise InputError("--freeze-edge: needs --init MODEL (the model whose edge is deployed)")
    if args.distill and base is None:
        raise InputError("--distill: needs --init MODEL (the model whose outputs are learnt)")
    for flag in ("per_split_heads", "per_split_server"):
        if getattr(args, flag) and base is None:
            raise InputError(f"--{flag.replace('_', '-')}: needs --init MODEL (the model whose "
                             "default split stays as it is)")
    if base is not None:
        _check_contract_options(args)
    opt = {key: CONTRACT_DEFAULTS[key] if getattr(args, key) is None else getattr(args, key)
           for key in CONTRACT_DEFAULTS}
    splits = tuple(s for s in (args.split or "").split(",") if s) or \
        ((base.default_split,) if base else (opt["split"],))
    if len(splits) > 1 and base is None:
        raise InputError(f"--split {','.join(splits)}: training several splits needs --init "
                         "MODEL (a trained model whose statistics every split shares)")
    unknown = [s for s in splits if s not in SPLIT_NAMES]
    if unknown or len(set(splits)) != len(splits):
        raise InputError(f"--split {','.join(splits)}: expected distinct split points of "
                         f"{', '.join(SPLIT_NAMES)}")
    split = splits[0]
    channels = opt["bottleneck"] if isinstance(opt["bottleneck"], list) else [opt["bottleneck"]]
    if len(channels) == 1:
        channels = channels * len(splits)
    if len(channels) != len(splits):
        raise InputError(f"--bottleneck {','.join(map(str, channels))}: expected one number or "
                         f"one per split ({len(splits)})")
    size = base.input_size if base else opt["size"]
    tasks = tuple(t for t in args.tasks.split(",") if t) if args.tasks else \
        (base.tasks if base else DEFAULT_TASKS)
    loaded, lists = _class_lists(args, load_data(args.data, "train", size, args.class_map),
                                 base, size)
    train_data = loaded.data
    if not labelled_frames(train_data, tasks).any():
        raise InputError(f"data {', '.join(args.data)}: no training frame has a label for "
                         f"any of the tasks {', '.join(tasks)}")
    try:
        if base is not None:  # train() keeps the rest of the base's configuration
            # --bottleneck with --init may add bottlenecks at splits the base has none at.
            added = {s: c or None for s, c in zip(splits, channels)} \
                if args.bottleneck is not None else {}
            config = finetune.fine_tune_config(base, dataclasses.replace(
                base, name=args.name or f"{base.name}_tuned", tasks=tasks,
                detection_classes=lists[0], segmentation_classes=lists[1],
                bottlenecks={**base.bottlenecks, **added}))
        else:
            config = ModelConfig(
                name=args.name or f"mtl_split_{opt['backbone']}_{'_'.join(splits)}",
                backbone=opt["backbone"], input_size=size, tasks=tasks,
                detection_classes=lists[0], segmentation_classes=lists[1],
                bottlenecks={s: c or None for s, c in zip(splits, channels)},
                default_split=split,
                codec=opt["codec"], train_quant_bits=opt["quant_bits"] or None)
    except (ModelConfigError, ValueError) as err:
        raise InputError(str(err)) from None
    if base is None:
        ref = args.depth_reference_focal
        if ref is None:  # the median over frames whose intrinsics are known
            ref = _median_focal(train_data)
        config.depth_reference_focal = ref or None
    try:
        val_data: Frames | None = load_data(args.data, "val", size, args.class_map, lists).data
    except SourceError as err:  # the same sources just gave training frames: none for val
        print(f"no validation: {err}")
        val_data = None
    if args.batch_size % world.size:
        raise InputError(f"--batch-size {args.batch_size}: the global batch must divide into "
                         f"the {world.size} processes")
    if args.memory_budget is not None:
        need = loader_memory(train_data, size, args.batch_size // world.size, args.workers)
        if need > args.memory_budget * 1e6:
            raise InputError(f"data {', '.join(args.data)}: {len(train_data)} frames need "
                             f"~{need / 1e6:.0f} MB of loader memory per process, over "
                             f"--memory-budget {args.memory_budget:g} MB (fewer --workers, a "
                             "smaller --batch-size or a larger budget)")
    print(f"train frames {len(train_data)}, val frames "
          f"{0 if val_data is None else len(val_data)}")
    try:
        result = train(config, train_data, val_data, args.out, split=splits, epochs=args.epochs,
                       batch_size=args.batch_size, lr=args.lr, weighting=args.weighting,
                       device=device,
                       pretrained=not args.no_pretrained and has_pretrained(opt["backbone"]),
                       resume=args.resume, max_steps=args.max_steps,
                       time_budget_s=args.time_budget, init_model=init_path,
                       freeze_edge=args.freeze_edge, workers=args.workers,
                       precision=args.precision, checkpoint_every=args.checkpoint_every,
                       distill=args.distill, per_split_heads=args.per_split_heads,
                       per_split_server=args.per_split_server, world=world)
    except ModelLoadError as err:
        raise InputError(f"--init {args.init}: {err}") from None
    except ValueError as err:
        raise InputError(str(err)) from None
    if world.main:
        print("VAL " + json.dumps(result))
        atomic_write_text(Path(args.out) / "val_metrics.json", json.dumps(result, indent=2))
    return 0
