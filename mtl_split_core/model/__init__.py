"""The multi-task split network: configuration, parts, losses and model cards."""

from mtl_split_core.model.card import ModelLoadError, load_model, save_model
from mtl_split_core.model.config import ModelConfig, ModelConfigError
from mtl_split_core.model.network import MultiTaskSplitNet

__all__ = ["ModelConfig", "ModelConfigError", "ModelLoadError", "MultiTaskSplitNet",
           "load_model", "save_model"]
