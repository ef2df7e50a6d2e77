"""Tasks as registered data: one module per task, looked up by name.

``get_task("depth")`` gives the Task that builds the depth head, its targets, loss, metric and
post-processing; ``task_names()`` lists what is registered. Importing this package registers
the built-in tasks (detection, segmentation, depth); a new task registers itself the same way
(``register_task(MyTask())``).
"""

from mtl_split_core.tasks.base import (
    OutputSpec,
    PostprocessContext,
    Task,
    TaskMetric,
    is_labelled,
    labelled_field,
)
from mtl_split_core.tasks.depth import DepthTask
from mtl_split_core.tasks.detection import DetectionTask
from mtl_split_core.tasks.registry import (
    DEFAULT_TASKS,
    get_task,
    get_tasks,
    register_task,
    task_names,
    unregister_task,
)
from mtl_split_core.tasks.segmentation import SegmentationTask

# Explicit, not import order: this is the registry's (and the headline's) order.
for _task in (DetectionTask(), SegmentationTask(), DepthTask()):
    register_task(_task)

__all__ = ["DEFAULT_TASKS", "OutputSpec", "PostprocessContext", "Task", "TaskMetric",
           "get_task", "get_tasks", "is_labelled", "labelled_field", "register_task",
           "task_names", "unregister_task"]
