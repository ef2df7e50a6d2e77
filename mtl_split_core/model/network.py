"""MultiTaskSplitNet: one backbone, split at a stage boundary, one head per task.

The neck and heads are shared by every split, except at the splits a card lists in
``per_split_heads``: those have a neck and heads of their own (``neck_and_heads``), so training
them leaves the default split's outputs bit for bit as they were. The splits it also lists in
``per_split_server`` have the whole server half of their own: beside the neck and heads, the
backbone stages after the split (``server_stages``: a copy of the shared backbone less its edge
part) and a neck that climbs to stride 8 in learned steps.

``edge(x, split)`` is what the robot runs, ``server(z, split)`` what the server runs, and
``forward(x, split)`` the whole network for that split configuration. Because the heads only
see server-side tensors, the function computed depends on the split; for every split,
``server(edge(x, s), s)`` equals ``forward(x, s)`` exactly when no codec sits between them.
Input images are RGB in [0, 1]; normalisation happens inside.
"""

from __future__ import annotations

import copy
import math
from typing import cast

import torch
from torch import nn

from mtl_split_core.backbones import build_backbone
from mtl_split_core.backbones.base import Backbone
from mtl_split_core.model.bottleneck import Bottleneck
from mtl_split_core.model.config import ModelConfig
from mtl_split_core.model.neck import Neck
from mtl_split_core.tasks.registry import get_task


class MultiTaskSplitNet(nn.Module):
    mean: torch.Tensor  # buffers (normalisation), registered in __init__
    std: torch.Tensor

    def __init__(self, config: ModelConfig, pretrained_backbone: bool = False):
        super().__init__()
        self.config = config
        self.backbone = build_backbone(config.backbone, pretrained=pretrained_backbone)
        self.split_names = list(self.backbone.split_names)
        self.register_buffer("mean", torch.tensor(config.mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(config.std).view(1, 3, 1, 1), persistent=False)
        self.bottlenecks = nn.ModuleDict({
            name: Bottleneck(c, k) for (name, k), c in
            zip(config.bottlenecks.items(), self.backbone.channels) if k is not None})
        self.neck, self.heads = self._new_neck_and_heads()
        # The splits with their own (state_dict keys split_necks.<split>.*,
        # split_heads.<split>.<task>.*, split_stages.<split>.<the backbone's keys>); the shared
        # ones keep their keys neck.*, heads.<task>.*, backbone.*.
        own = {s: self._new_neck_and_heads(s) for s in config.per_split_heads}
        self.split_necks = nn.ModuleDict({s: neck for s, (neck, _) in own.items()})
        self.split_heads = nn.ModuleDict({s: heads for s, (_, heads) in own.items()})
        # (The deepest split has no stages after it: none to copy.)
        self.split_stages = nn.ModuleDict({s: stages_after(self.backbone, i) for s, i in
                                           map(self._index, config.per_split_server)
                                           if i < len(self.split_names) - 1})

    def _new_neck_and_heads(self, split: str | None = None) -> tuple[Neck, nn.ModuleDict]:
        """A neck and one head per task, built by the task registry; the neck of a split with
        a server half of its own refines each x2 step from its shallowest level to stride 8."""
        width = self.config.neck_channels
        steps = 0
        if split in self.config.per_split_server:
            steps = max(self._index(split)[1], 1) - 1  # stage 1 is stride 8
        return (Neck(self.backbone.channels, width, refine_steps=steps),
                nn.ModuleDict({name: get_task(name).build_head(width, self.config)
                               for name in self.config.tasks}))

    def neck_and_heads(self, split: str | None = None) -> tuple[Neck, nn.ModuleDict]:
        """The neck and heads (task -> head) that serve ``split``."""
        split, _ = self._index(split)
        if split in self.split_necks:
            return cast(Neck, self.split_necks[split]), cast(nn.ModuleDict,
                                                              self.split_heads[split])
        return self.neck, self.heads

    def server_stages(self, split: str | None = None) -> Backbone:
        """The backbone whose stages after ``split`` the server runs: the split's own
        (``per_split_server``) or the shared one."""
        split, _ = self._index(split)
        if split in self.split_stages:
            return cast(Backbone, self.split_stages[split])
        return self.backbone

    def split_path_modules(self, split: str | None = None) -> list[nn.Module]:
        """Every module whose weights ``forward(x, split)`` uses: the whole backbone (edge
        prefix and server suffix), the split's own server stages if it has them, its
        bottleneck, neck and heads."""
        split, _ = self._index(split)
        bottleneck = [self.bottlenecks[split]] if split in self.bottlenecks else []
        stages = [self.split_stages[split]] if split in self.split_stages else []
        return [self.backbone, *stages, *bottleneck, *self.neck_and_heads(split)]

    def _index(self, split: str | None) -> tuple[str, int]:
        split = split or self.config.default_split
        if split not in self.split_names:
            raise ValueError(f"unknown split {split!r}; expected one of {self.split_names}")
        return split, self.split_names.index(split)

    def _bottleneck(self, split: str) -> Bottleneck:
        return cast(Bottleneck, self.bottlenecks[split])

    def split_shape(self, split: str, input_size: tuple[int, int] | None = None
                    ) -> tuple[int, int, int]:
        """(C, H, W) of the tensor ``edge`` sends at ``split`` for an input of (W, H)."""
        split, i = self._index(split)
        w, h = input_size or self.config.input_size
        stride = self.backbone.strides[i]
        k = self.config.bottlenecks.get(split)
        return (k or self.backbone.channels[i], math.ceil(h / stride), math.ceil(w / stride))

    def edge_modules(self) -> list[nn.Module]:
        """What the robot runs at one split or another: the backbone (all of it is edge at the
        deepest split) and every bottleneck encoder. Normalisation is config, not weights."""
        return [self.backbone, *(cast(Bottleneck, b).encoder for b in self.bottlenecks.values())]

    def edge_state_dict(self) -> dict[str, torch.Tensor]:
        """A copy of the weights and buffers of ``edge_modules`` under their ``state_dict``
        keys."""
        edge_ids = {id(t) for m in self.edge_modules()
                    for t in (*m.parameters(), *m.buffers())}
        return {k: v.detach().clone() for k, v in self.state_dict(keep_vars=True).items()
                if id(v) in edge_ids}

    def edge(self, x: torch.Tensor, split: str | None = None) -> torch.Tensor:
        """Robot side: normalise, stages 0..i, bottleneck encoder; fake-quantized in training."""
        split, i = self._index(split)
        z = self.backbone.run((x - self.mean) / self.std, 0, i + 1)[-1]
        if split in self.bottlenecks:
            z = self._bottleneck(split).encode(z)
        if self.training and self.config.train_quant_bits:
            from mtl_split_core.codec import fake_quantize
            z = fake_quantize(z, self.config.train_quant_bits)
        return z

    def server(self, z: torch.Tensor, split: str | None = None,
               out_hw: tuple[int, int] | None = None,
               focal: torch.Tensor | float | None = None) -> dict[str, torch.Tensor]:
        """Server side: bottleneck decoder, stages i+1..3, neck, heads.

        ``focal``: the camera's vertical focal length in model-input pixels, per sample (N,)
        or one number, passed to every head (with a card's ``depth_reference_focal`` depth is
        rescaled by focal / reference). None = the reference camera.
        """
        split, i = self._index(split)
        if split in self.bottlenecks:
            z = self._bottleneck(split).decode(z)
        feats = {i: z}
        for j, f in enumerate(self.server_stages(split).run(z, i + 1, 4), start=i + 1):
            feats[j] = f
        if out_hw is None:  # the card's input size (not recoverable from z: sizes round up)
            out_hw = (self.config.input_size[1], self.config.input_size[0])
        neck, heads = self.neck_and_heads(split)
        y = neck(feats, (math.ceil(out_hw[0] / Neck.OUT_STRIDE),
                         math.ceil(out_hw[1] / Neck.OUT_STRIDE)))
        out: dict[str, torch.Tensor] = {}
        for head in heads.values():
            out.update(head(y, out_hw, focal))
        return out

    def forward(self, x: torch.Tensor, split: str | None = None,
                focal: torch.Tensor | float | None = None) -> dict[str, torch.Tensor]:
        return self.server(self.edge(x, split), split, out_hw=(x.shape[-2], x.shape[-1]),
                           focal=focal)


def stages_after(backbone: Backbone, index: int) -> Backbone:
    """A copy of ``backbone`` to run its stages after ``index`` (``run(z, index + 1, 4)``),
    without the modules only stages 0..index call (found by running both parts once on a small
    input with forward hooks, in eval mode): a card stores no weights the server never runs."""
    stages = copy.deepcopy(backbone).eval()
    called: list[set[int]] = [set(), set()]  # by the edge's stages, by the server's
    part = called[0]

    def record(module: nn.Module, *_: object) -> None:
        part.add(id(module))

    hooks = [m.register_forward_hook(record) for m in stages.modules()]
    try:
        with torch.no_grad():
            z = stages.run(torch.zeros(1, 3, 64, 64), 0, index + 1)[-1]
            part = called[1]
            stages.run(z, index + 1, 4)
    finally:
        for hook in hooks:
            hook.remove()
    removed: list[str] = []
    for name, module in list(stages.named_modules()):
        if not name or name.startswith(tuple(r + "." for r in removed)):
            continue
        if id(module) in called[0] and not any(id(m) in called[1] for m in module.modules()):
            parent, _, child = name.rpartition(".")
            stages.get_submodule(parent)._modules[child] = None  # state_dict etc. skip it
            removed.append(name)
    return stages.train(backbone.training)
