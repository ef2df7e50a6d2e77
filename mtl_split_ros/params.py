"""Declared, described and validated node parameters.

Each node lists its parameters as ``Param`` entries (configuration as data). ``declare_all``
declares them with descriptions (visible in ``ros2 param describe``) and validates the values,
raising ``ParameterError`` that names the parameter and the accepted values; the node's ``main``
turns that into one clear fatal log line and a non-zero exit.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from rcl_interfaces.msg import ParameterDescriptor


class ParameterError(ValueError):
    """A parameter value the node cannot start with."""


@dataclass(frozen=True)
class Param:
    name: str
    default: Any
    description: str
    choices: Sequence[Any] | None = None
    # Returns an error message (str) for a bad value, or None when the value is fine.
    check: Callable[[Any], str | None] | None = field(default=None, compare=False)


def declare_all(node, params: Sequence[Param]) -> dict[str, Any]:
    """Declare ``params`` on ``node`` and return their validated values by name."""
    values = {}
    for p in params:
        desc = p.description
        if p.choices:
            desc += f" One of: {', '.join(map(str, p.choices))}."
        value = node.declare_parameter(p.name, p.default,
                                       ParameterDescriptor(description=desc)).value
        if p.choices is not None and value not in p.choices:
            raise ParameterError(f"parameter '{p.name}' = {value!r} is not accepted; expected "
                                 f"one of: {', '.join(map(str, p.choices))}")
        if p.check is not None:
            problem = p.check(value)
            if problem:
                raise ParameterError(f"parameter '{p.name}' = {value!r}: {problem}")
        values[p.name] = value
    return values


def positive(value) -> str | None:
    return None if value > 0 else "must be > 0"


def in_range(lo, hi) -> Callable[[Any], str | None]:
    def check(value):
        return None if lo <= value <= hi else f"must be in [{lo}, {hi}]"
    return check
