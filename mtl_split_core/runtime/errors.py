"""Errors of the run-time layer that name the setting they are about."""

from __future__ import annotations

from mtl_split_core.errors import InputError


class ConfigError(InputError):
    """A setting (node parameter or CLI option) the runtime cannot start with."""

    def __init__(self, parameter: str, message: str) -> None:
        super().__init__(f"parameter '{parameter}': {message}")
        self.parameter = parameter
