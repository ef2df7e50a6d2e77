"""The task registry: task name -> Task (configuration as data).

Built-in tasks register themselves when ``mtl_split_core.tasks`` is imported; a new task is one
module that defines a ``Task`` subclass and calls ``register_task`` (plus its import in
``mtl_split_core/tasks/__init__.py``).
"""

from __future__ import annotations

from collections.abc import Iterable

from mtl_split_core.tasks.base import Task

#: the tasks of the default model card, in head order.
DEFAULT_TASKS = ("detection", "segmentation", "depth")

_REGISTRY: dict[str, Task] = {}


def register_task(task: Task, replace: bool = False) -> Task:
    """Add ``task`` under ``task.name``; a second task of the same name needs ``replace``."""
    if not task.name or not task.name.isidentifier():
        raise ValueError(f"task name {task.name!r} must be a non-empty identifier")
    if task.name in _REGISTRY and not replace:
        raise ValueError(f"task {task.name!r} is already registered")
    _REGISTRY[task.name] = task
    return task


def unregister_task(name: str) -> Task:
    """Remove and return the task ``name``."""
    try:
        return _REGISTRY.pop(name)
    except KeyError:
        raise KeyError(f"task {name!r} is not registered") from None


def get_task(name: str) -> Task:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown task {name!r}; registered: {', '.join(_REGISTRY)}") from None


def task_names() -> tuple[str, ...]:
    """Names of every registered task, in registration order."""
    return tuple(_REGISTRY)


def get_tasks(names: Iterable[str]) -> list[Task]:
    """The tasks ``names`` (in that order)."""
    return [get_task(n) for n in names]
