"""Tasks as registered data: one module per task, looked up by name.

``get_task("depth")`` gives the Task that builds the depth head, its targets, loss, metric and
post-processing; ``task_names()`` lists what is registered. Importing this package registers
the built-in tasks (detection, segmentation, depth).
"""

# Imported for their registration; this order is the registry's (and the headline's) order.
from mtl_split_core.tasks import (
                                           depth,  # noqa: E402,F401
                                           detection,  # noqa: E402,F401,I001
                                           segmentation,  # noqa: E402,F401
)
from mtl_split_core.tasks.base import OutputSpec, PostprocessContext, Task, TaskMetric
from mtl_split_core.tasks.registry import (
                                           DEFAULT_TASKS,
                                           get_task,
                                           get_tasks,
                                           register_task,
                                           task_names,
                                           unregister_task,
)

__all__ = ["DEFAULT_TASKS", "OutputSpec", "PostprocessContext", "Task", "TaskMetric",
           "get_task", "get_tasks", "register_task", "task_names", "unregister_task"]
