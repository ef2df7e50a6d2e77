"""Backbone registry: ``build_backbone(name, pretrained)``."""

from __future__ import annotations

from typing import Callable

from mtl_split_core.backbones.base import SPLIT_NAMES, STRIDES, Backbone
from mtl_split_core.backbones.efficientnet_lite import efficientnet_lite0
from mtl_split_core.backbones.mobilenetv3 import mobilenetv3_small
from mtl_split_core.backbones.resnet import resnet18

BACKBONES: dict[str, Callable[..., Backbone]] = {
    "efficientnet_lite0": efficientnet_lite0,
    "resnet18": resnet18,
    "mobilenetv3_small": mobilenetv3_small,
}


def build_backbone(name: str, pretrained: bool = False) -> Backbone:
    try:
        factory = BACKBONES[name]
    except KeyError:
        raise KeyError(f"unknown backbone {name!r}; expected one of "
                       f"{', '.join(BACKBONES)}") from None
    return factory(pretrained=pretrained)


__all__ = ["BACKBONES", "Backbone", "SPLIT_NAMES", "STRIDES", "build_backbone"]
