"""Device and precision parameters -> torch objects, with errors that list accepted values."""

from __future__ import annotations

import re

import torch

from mtl_split_core.runtime.errors import ConfigError

PRECISIONS = ("fp32", "fp16")


def resolve_device(name: str) -> torch.device:
    """``auto`` (CUDA if present, else CPU), ``cpu``, ``cuda`` or ``cuda:N``."""
    name = (name or "auto").strip().lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    match = re.fullmatch(r"cuda(?::(\d+))?", name)
    if not match:
        raise ConfigError("device", f"unknown device {name!r}; expected auto, cpu, cuda or cuda:N")
    if not torch.cuda.is_available():
        raise ConfigError("device", f"device {name!r} requested but CUDA is not available here; "
                         f"use auto or cpu")
    index = int(match.group(1) or 0)
    if index >= torch.cuda.device_count():
        raise ConfigError("device", f"device {name!r}: only {torch.cuda.device_count()} "
                                    f"CUDA device(s)")
    return torch.device("cuda", index)


def resolve_dtype(precision: str, device: torch.device) -> torch.dtype:
    """fp32 anywhere; fp16 only on CUDA (CPU half kernels are slow or missing)."""
    if precision not in PRECISIONS:
        raise ConfigError("precision", f"unknown precision {precision!r}; expected one of "
                                       f"{', '.join(PRECISIONS)}")
    if precision == "fp16" and device.type != "cuda":
        raise ConfigError("precision", "fp16 needs a CUDA device; use fp32 on CPU")
    return torch.float16 if precision == "fp16" else torch.float32
