"""Fine-tuning an existing model: what it keeps, what starts afresh, what may not change.

A fine-tuned model keeps the split contract of the model it starts from (backbone, input size,
normalisation, bottlenecks, split, codec, neck, depth range and reference focal) and its
weights, except the heads whose class lists changed (compared by name, through each task's
``Task.classes``): those start from a fresh initialisation. Freezing the edge part
(``MultiTaskSplitNet.edge_modules``) keeps robots already running the old model's edge
compatible: its bits stay the same, so only the server needs the new model.

The extensions of the contract allowed: bottlenecks at split points where the base has
none (e.g. turning a single-split model into one that serves every split); they start fresh.
And a neck and heads of their own for splits that shared the base's (``per_split_heads``);
they start as copies of the shared ones. Or a whole server half of their own
(``per_split_server``): also the backbone stages after the split, starting as copies of the
base's, and the neck's learned upsampling steps, starting as the identity.
``freeze_split_path`` then keeps the base's default split bit for bit while the other splits
learn.
"""

from __future__ import annotations

import dataclasses

from torch import nn

from mtl_split_core.codec import FALLBACK_CODEC, entropy_point
from mtl_split_core.model.config import ModelConfig
from mtl_split_core.model.network import MultiTaskSplitNet
from mtl_split_core.tasks.registry import get_task

#: what a fine-tuned model takes from the configuration asked for; the rest is the base's.
TUNABLE_FIELDS = ("name", "detection_classes", "segmentation_classes", "tasks")


def fine_tune_config(base: ModelConfig, wanted: ModelConfig) -> ModelConfig:
    """``base`` with the name, class lists and tasks of ``wanted``, plus ``wanted``'s
    bottlenecks at splits where ``base`` has none and its ``per_split_heads`` and
    ``per_split_server``. ValueError when ``wanted`` changes one of ``base``'s bottlenecks."""
    changed = {s: (c, wanted.bottlenecks.get(s)) for s, c in base.bottlenecks.items()
               if c and wanted.bottlenecks.get(s) not in (None, c)}
    if changed:
        raise ValueError(f"bottlenecks {changed} (base, wanted): a fine-tuned model keeps the "
                         "base's bottlenecks; it may only add them at other splits")
    bottlenecks = {s: c or wanted.bottlenecks.get(s) for s, c in base.bottlenecks.items()}
    return dataclasses.replace(
        base, bottlenecks=bottlenecks,
        per_split_heads=_added(base.per_split_heads, wanted.per_split_heads),
        per_split_server=_added(base.per_split_server, wanted.per_split_server),
        **{f: getattr(wanted, f) for f in TUNABLE_FIELDS})


def tables_if_edge_kept(config: ModelConfig, edge_kept: bool) -> ModelConfig:
    """``config`` as a fine-tune saves it: entropy tables model the symbols the base's edge
    sends at their split, so they stay only where training keeps that edge bit for bit
    (``edge_kept``: a frozen edge, or the default split's path frozen while other splits
    learn). Otherwise they go and an entropy-coded default codec becomes ``FALLBACK_CODEC``
    (``mtl-split train-eb`` fits new tables to the tuned model)."""
    if edge_kept or config.entropy is None:
        return config
    codec = config.codec if entropy_point(config.codec) is None else FALLBACK_CODEC
    return dataclasses.replace(config, entropy=None, codec=codec)


def _added(base: tuple[str, ...], wanted: tuple[str, ...]) -> tuple[str, ...]:
    return base + tuple(s for s in wanted if s not in base)


def changed_heads(base: ModelConfig, tuned: ModelConfig) -> list[str]:
    """The heads of ``tuned`` that cannot take ``base``'s weights: new tasks and tasks whose
    class lists differ by name."""
    return [name for name in tuned.tasks if name not in base.tasks
            or get_task(name).classes(base) != get_task(name).classes(tuned)]


def transfer_weights(model: MultiTaskSplitNet, base: MultiTaskSplitNet) -> list[str]:
    """Copy ``base``'s weights into ``model`` (built from ``fine_tune_config``), all but the
    heads ``changed_heads`` names, which keep their fresh initialisation; returns those. A
    split that gains a neck and heads of its own starts from the base's shared ones; one that
    gains its own server stages from the base's backbone, its neck's refinement steps fresh
    (the identity)."""
    fresh = changed_heads(base.config, model.config)
    dropped = [s for s, c in base.config.bottlenecks.items()
               if c and model.config.bottlenecks.get(s) != c]
    if dropped:
        raise ValueError(f"the model lacks the base's bottleneck at {dropped}: not the same "
                         "architecture")
    added = [s for s, c in model.config.bottlenecks.items()
             if c and not base.config.bottlenecks.get(s)]
    skip = tuple(f"heads.{name}." for name in fresh) + tuple(f"bottlenecks.{s}." for s in added)
    skip += tuple(f"split_heads.{s}.{name}." for s in model.config.per_split_heads
                  for name in fresh)
    skip += tuple(f"split_necks.{s}.refine." for s in model.config.per_split_server
                  if s not in base.config.per_split_server)
    source = base.state_dict()
    for s in model.config.per_split_server:
        if s not in base.config.per_split_server:
            source.update({f"split_stages.{s}.{k}": v
                           for k, v in base.server_stages(s).state_dict().items()})
    for s in model.config.per_split_heads:
        if s not in base.config.per_split_heads:
            source.update({f"split_necks.{s}.{k}": v for k, v in base.neck.state_dict().items()})
            source.update({f"split_heads.{s}.{k}": v
                           for k, v in base.heads.state_dict().items()})
    own = model.state_dict()
    state = {k: v for k, v in source.items() if k in own and not k.startswith(skip)}
    missing = [k for k in own if k not in state and not k.startswith(skip)]
    if missing:
        raise ValueError(f"the base model lacks {missing[:5]}: not the same architecture")
    model.load_state_dict(state, strict=False)
    return fresh


def freeze_edge(model: MultiTaskSplitNet) -> list[str]:
    """Stop gradients into the edge part; returns the frozen parameter names. Its batch-norm
    statistics stay fixed only while those modules are in eval mode (``train`` keeps them so
    after every ``model.train()``)."""
    return _freeze(model, model.edge_modules())


def freeze_split_path(model: MultiTaskSplitNet, split: str) -> list[str]:
    """Stop gradients into every weight ``split`` uses (``split_path_modules``: the whole
    backbone, its bottleneck, neck and heads); returns the frozen parameter names. With those
    modules in eval mode (their batch-norm statistics), ``forward(x, split)`` stays bit for bit
    what it was whatever the other splits learn."""
    return _freeze(model, model.split_path_modules(split))


def _freeze(model: MultiTaskSplitNet, modules: list[nn.Module]) -> list[str]:
    frozen = []
    ids = {id(p) for m in modules for p in m.parameters()}
    for name, p in model.named_parameters():
        if id(p) in ids:
            p.requires_grad_(False)
            frozen.append(name)
    return frozen
