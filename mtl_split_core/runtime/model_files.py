"""Model files: where shipped models live (source tree, install/, $MTL_SPLIT_MODELS) and
loading one named by a setting, without ROS."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mtl_split_core.locations import data_dirs

if TYPE_CHECKING:
    from mtl_split_core.model.network import MultiTaskSplitNet

DEFAULT_MODEL_NAME = "default"


def models_dirs() -> list[Path]:
    """Candidate folders holding shipped models, most specific first."""
    override = [Path(os.environ["MTL_SPLIT_MODELS"])] if os.environ.get("MTL_SPLIT_MODELS") \
        else []
    return override + data_dirs("models", "models")


def resolve_model_path(name_or_path: str | None) -> Path:
    """A model folder from a path, a shipped model name, or '' for the packaged default."""
    target = name_or_path or DEFAULT_MODEL_NAME
    path = Path(target).expanduser()
    if path.exists():
        return path
    for d in models_dirs():
        if (d / target).exists():
            return d / target
    searched = ", ".join(str(d) for d in models_dirs())
    raise FileNotFoundError(f"model {target!r} not found (as a path, or by name in: {searched})")


def read_model_card_param(name_or_path: str | None) -> dict[str, Any]:
    """The model card alone (no weights, no torch work) for a ``model`` setting: what a node
    needs to declare its topics before the slower load; errors name the setting."""
    from mtl_split_core.model.card import ModelLoadError, read_card
    from mtl_split_core.runtime.errors import ConfigError
    try:
        return read_card(resolve_model_path(name_or_path))
    except (FileNotFoundError, ModelLoadError) as err:
        raise ConfigError("model", str(err)) from err


def load_model_param(name_or_path: str | None) -> tuple[MultiTaskSplitNet, dict[str, Any]]:
    """(model, card) for a node's or tool's ``model`` setting; errors name the setting."""
    from mtl_split_core.model import ModelLoadError, load_model
    from mtl_split_core.runtime.errors import ConfigError
    try:
        return load_model(resolve_model_path(name_or_path))
    except (FileNotFoundError, ModelLoadError) as err:
        raise ConfigError("model", str(err)) from err
