"""Backbone registry: name -> factory, and whether ImageNet weights ship for it.

``build_backbone(name, pretrained)`` builds one; ``has_pretrained(name)`` says whether
``pretrained=True`` can work offline; ``register_backbone`` adds a new one.
"""

from __future__ import annotations

from collections.abc import Callable

from mtl_split_core.backbones.base import SPLIT_NAMES, STRIDES, Backbone, BackboneSpec
from mtl_split_core.backbones.efficientnet_lite import efficientnet_lite0, efficientnet_lite0_aa
from mtl_split_core.backbones.mobilenetv3 import mobilenetv3_small
from mtl_split_core.backbones.resnet import resnet18

BACKBONE_SPECS: dict[str, BackboneSpec] = {}
# name -> factory (kept for importers that only need names or factories).
BACKBONES: dict[str, Callable[..., Backbone]] = {}


def register_backbone(name: str, factory: Callable[..., Backbone], pretrained: bool = False,
                      replace: bool = False) -> BackboneSpec:
    """Add a backbone; ``pretrained``: ImageNet weights are available offline for it."""
    if name in BACKBONE_SPECS and not replace:
        raise ValueError(f"backbone {name!r} is already registered")
    spec = BackboneSpec(name, factory, pretrained)
    BACKBONE_SPECS[name] = spec
    BACKBONES[name] = factory
    return spec


def backbone_spec(name: str) -> BackboneSpec:
    try:
        return BACKBONE_SPECS[name]
    except KeyError:
        raise KeyError(f"unknown backbone {name!r}; expected one of "
                       f"{', '.join(BACKBONE_SPECS)}") from None


def has_pretrained(name: str) -> bool:
    """Whether ImageNet weights for backbone ``name`` ship with the project."""
    return backbone_spec(name).pretrained


def build_backbone(name: str, pretrained: bool = False) -> Backbone:
    spec = backbone_spec(name)
    if pretrained and not spec.pretrained:
        with_weights = ", ".join(n for n, s in BACKBONE_SPECS.items() if s.pretrained)
        raise FileNotFoundError(f"no offline ImageNet weights for {name}; use pretrained=False "
                                f"(random init) or one of {with_weights}")
    return spec.factory(pretrained=pretrained)


register_backbone("efficientnet_lite0", efficientnet_lite0, pretrained=True)
register_backbone("efficientnet_lite0_aa", efficientnet_lite0_aa, pretrained=True)
register_backbone("resnet18", resnet18)
register_backbone("mobilenetv3_small", mobilenetv3_small)

__all__ = ["BACKBONES", "BACKBONE_SPECS", "Backbone", "BackboneSpec", "SPLIT_NAMES", "STRIDES",
           "backbone_spec", "build_backbone", "has_pretrained", "register_backbone"]
