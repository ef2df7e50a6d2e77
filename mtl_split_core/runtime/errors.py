"""Errors of the run-time layer that name the setting they are about."""


class ConfigError(ValueError):
    """A setting (node parameter or CLI option) the runtime cannot start with."""

    def __init__(self, parameter: str, message: str):
        super().__init__(f"parameter '{parameter}': {message}")
        self.parameter = parameter
