"""Declared, described and validated node parameters.

Each node lists its parameters as ``Param`` entries (configuration as data). ``declare_all``
declares them with descriptions (visible in ``ros2 param describe``), validates the start-up
values and registers an on-set callback that runs the same checks at run time:

- ``dynamic=True``: ``ros2 param set`` works; a bad value is refused with the reason and the
  node keeps the old one; a good one is handed to the node's ``apply`` hook (which may refuse
  it too) and stored in the node's config dict, so the next frame uses it.
- otherwise the parameter is declared read-only: ``ros2 param set`` fails ("read-only").
- a ``check=in_range(lo, hi)`` on a number is declared as a ROS range too (FloatingPointRange /
  IntegerRange): ``ros2 param describe`` shows the bounds, rqt_reconfigure a slider, and rclpy
  refuses a value outside them before the node sees it ("out of range. Min: .., Max: ..").
- a value that means "the default" ('' = the model's split) is replaced by the value the
  node runs once it knows it (``Config.show_effective``), so ``ros2 param get`` tells the truth.

A bad start-up value raises ``ParameterError`` naming the parameter and what is accepted; the
node's ``main`` turns that into one clear fatal line and exit code 2.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from rcl_interfaces.msg import (
    FloatingPointRange,
    IntegerRange,
    ParameterDescriptor,
    SetParametersResult,
)
from rclpy.exceptions import InvalidParameterTypeException, InvalidParameterValueException
from rclpy.node import Node
from rclpy.parameter import Parameter


class ParameterError(ValueError):
    """A parameter value the node cannot start with (or, at run time, refuses)."""


@dataclass(frozen=True)
class Range:
    """``check=in_range(lo, hi)``: inclusive bounds, checked here and declared to ROS."""

    lo: float
    hi: float

    def __call__(self, value: float) -> str | None:
        return None if self.lo <= value <= self.hi else self.expected

    @property
    def expected(self) -> str:
        return f"must be in [{self.lo}, {self.hi}]"


@dataclass(frozen=True)
class Param:
    name: str
    default: Any
    description: str
    choices: Sequence[Any] | None = None
    # Returns an error message (str) for a bad value, or None when the value is fine.
    check: Callable[[Any], str | None] | None = field(default=None, compare=False)
    # True: may change at run time (same checks as at start-up); False: declared read-only.
    dynamic: bool = False
    # Accepted value types when the default's type is too narrow (e.g. split: name or index).
    # Float parameters accept integers too (``-p rate:=10``).
    types: tuple[type, ...] | None = None

    def accepted_types(self) -> tuple[type, ...] | None:
        """Types checked here instead of by rclpy's static typing; None: rclpy checks."""
        if self.types is not None:
            return self.types
        if isinstance(self.default, float):
            return (float, int)
        return None

    def validate(self, value: Any) -> Any:
        """``value`` as the node uses it (ints for float parameters become floats).

        Raises ParameterError naming the parameter and what it accepts.
        """
        types = self.accepted_types()
        if types is not None:
            if isinstance(value, bool) and bool not in types or not isinstance(value, types):
                raise ParameterError(
                    f"parameter '{self.name}' = {value!r}: expected "
                    f"{' or '.join(_TYPE_NAMES.get(t, t.__name__) for t in types)}")
            if float in types and int in types and isinstance(value, int):
                value = float(value)
        if self.choices is not None and value not in self.choices:
            raise ParameterError(f"parameter '{self.name}' = {value!r} is not accepted; "
                                 f"expected one of: {_choices(self.choices)}")
        if self.check is not None:
            problem = self.check(value)
            if problem:
                raise ParameterError(f"parameter '{self.name}' = {value!r}: {problem}")
        return value

    def descriptor(self) -> ParameterDescriptor:
        desc = self.description
        if self.choices:
            desc += f" One of: {_choices(self.choices)}."
        desc += " Changeable at run time." if self.dynamic else " Read-only: set at start."
        descriptor = ParameterDescriptor(description=desc, read_only=not self.dynamic,
                                         dynamic_typing=self.accepted_types() is not None)
        bounds = self.check if isinstance(self.check, Range) else None
        if bounds is not None and not isinstance(self.default, bool):
            if isinstance(self.default, int):
                descriptor.integer_range = [IntegerRange(
                    from_value=int(bounds.lo), to_value=int(bounds.hi), step=1)]
            elif isinstance(self.default, float):
                descriptor.floating_point_range = [FloatingPointRange(
                    from_value=float(bounds.lo), to_value=float(bounds.hi), step=0.0)]
        return descriptor


_TYPE_NAMES = {bool: "a boolean", int: "an integer", float: "a number", str: "a string",
               list: "a list"}

# The node's hook for run-time changes: gets {name: validated value} of the dynamic
# parameters being set (one ``ros2 param set`` call), applies them or raises ParameterError.
ApplyHook = Callable[[Mapping[str, Any]], None]


class Config(dict[str, Any]):
    """A node's live configuration by parameter name (what ``declare_all`` returns)."""

    def __init__(self, node: Node) -> None:
        super().__init__()
        self._node = node
        self._showing: set[str] = set()  # names being set to their effective value

    def show_effective(self, values: Mapping[str, Any]) -> None:
        """Parameters left at '' (= the node's default) are set to the value the node runs
        (``split`` '' -> ``s16``), so ``ros2 param get`` reports it; a value given (``split``
        0) stays as given. Not a change: no ``apply``, no log line."""
        changed = {k: v for k, v in values.items() if self.get(k) == "" and v != ""}
        self._showing = set(changed)
        try:
            self._node.set_parameters([Parameter(k, value=v) for k, v in changed.items()])
        finally:
            self._showing = set()
        self.update(changed)


def declare_all(node: Node, params: Sequence[Param], apply: ApplyHook | None = None
                ) -> Config:
    """Declare ``params`` on ``node``; return their validated values by name.

    The returned dict is the node's live configuration: accepted run-time changes of dynamic
    parameters are written into it after ``apply`` succeeded.
    """
    values = Config(node)
    for p in params:
        try:
            value = node.declare_parameter(p.name, p.default, p.descriptor()).value
        except InvalidParameterTypeException as err:
            given = str(err).removesuffix(f": {p.name}")  # rclpy names the value given
            raise ParameterError(f"parameter '{p.name}': wrong type, expected "
                                 f"{_describe_type(p.default)} ({given})") from None
        except InvalidParameterValueException as err:  # outside the declared ROS range
            raise ParameterError(_range_refusal(p, str(err))) from None
        values[p.name] = p.validate(value)
    by_name = {p.name: p for p in params}

    def on_set(changes: list[Parameter]) -> SetParametersResult:
        accepted: dict[str, Any] = {}
        try:
            for change in changes:
                p = by_name.get(change.name)
                if p is None or change.name in values._showing:  # not ours / not a change
                    continue
                if not p.dynamic:  # rclpy refuses read-only ones first; keep the rule here too
                    raise ParameterError(f"parameter '{p.name}' is read-only")
                accepted[p.name] = p.validate(change.value)
            if accepted and apply is not None:
                apply(accepted)
        except ParameterError as err:
            node.get_logger().warning(f"refused parameter change: {err}")
            return SetParametersResult(successful=False, reason=str(err))
        values.update(accepted)
        if accepted:
            node.get_logger().info("parameters changed: " + ", ".join(
                f"{k}={v!r}" for k, v in accepted.items()))
        return SetParametersResult(successful=True)

    node.add_on_set_parameters_callback(on_set)
    return values


def _range_refusal(p: Param, rclpy_message: str) -> str:
    """The start-up error for a value rclpy refused by the declared range, in the words of
    the node's own check (rclpy's exception names the value only inside its message)."""
    given = re.search(r"Invalid parameter value \((.*?)\) for parameter", rclpy_message)
    bounds = p.check if isinstance(p.check, Range) else None
    if given is None or bounds is None:
        return f"parameter '{p.name}': {rclpy_message.split('Reason: ', 1)[-1]}"
    return f"parameter '{p.name}' = {given.group(1)}: {bounds.expected}"


def _choices(choices: Sequence[Any]) -> str:
    return ", ".join("''" if c == "" else str(c) for c in choices)


def _describe_type(default: Any) -> str:
    if isinstance(default, list):
        inner = _TYPE_NAMES.get(type(default[0]), "values") if default else "values"
        return f"a list of {inner.split(' ', 1)[-1]}s"
    return _TYPE_NAMES.get(type(default), type(default).__name__)


def positive(value: float) -> str | None:
    return None if value > 0 else "must be > 0"


def in_range(lo: float, hi: float) -> Range:
    return Range(lo, hi)
