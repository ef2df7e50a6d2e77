"""The task registry: built-ins registered in head order, clear errors, every task complete."""

import subprocess
import sys

import pytest
import torch

from mtl_split_core.model import ModelConfig
from mtl_split_core.tasks import (
    DEFAULT_TASKS,
    PostprocessContext,
    Task,
    get_task,
    register_task,
    task_names,
    unregister_task,
)


def test_builtin_tasks_are_registered_in_head_order():
    assert task_names()[:3] == DEFAULT_TASKS == ("detection", "segmentation", "depth")
    assert ModelConfig().tasks == DEFAULT_TASKS
    fields = [f for name in DEFAULT_TASKS for f in get_task(name).result_fields]
    assert fields == ["boxes", "class_ids", "scores", "segmentation", "depth"]
    suffixes = [o.suffix for name in DEFAULT_TASKS for o in get_task(name).outputs]
    assert len(suffixes) == len(set(suffixes))  # no two tasks claim one topic


def test_unknown_duplicate_and_bad_names_are_refused():
    with pytest.raises(KeyError, match="detection, segmentation, depth"):
        get_task("normals")
    with pytest.raises(ValueError, match="already registered"):
        register_task(get_task("depth"))
    with pytest.raises(KeyError, match="not registered"):
        unregister_task("normals")
    bad = Task()
    bad.name = "not a name"
    with pytest.raises(ValueError, match="identifier"):
        register_task(bad)


@pytest.mark.parametrize("name", DEFAULT_TASKS)
def test_each_builtin_task_builds_a_head_whose_outputs_postprocess(name):
    config = ModelConfig(backbone="mobilenetv3_small", input_size=(64, 48))
    task = get_task(name)
    head = task.build_head(8, config).eval()
    with torch.no_grad():
        out = head(torch.randn(2, 8, 6, 8), (48, 64), None)
    results = task.postprocess(out, PostprocessContext(crop=(0, 4, 64, 44)))
    assert len(results) == 2 and all(set(r) == set(task.result_fields) for r in results)
    if name != "detection":  # dense maps come back cropped to the content window
        assert results[0][name].shape == (40, 64)
    assert set(task.headline) and task.metric(config).compute() is not None


FIRST_IMPORTS = ["mtl_split_core.tasks", "mtl_split_core.model", "mtl_split_core.runtime.server",
                 "mtl_split_ros.outputs"]


@pytest.fixture(scope="module")
def fresh_interpreters():
    """One fresh interpreter per first import, all started at once: each spends ~2 s importing
    torch on one core, so together they take about two of them on a 2-core machine."""
    code = ("import {}; from mtl_split_core.tasks import task_names; "
            "print(','.join(task_names()))")
    procs = {first: subprocess.Popen([sys.executable, "-c", code.format(first)],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for first in FIRST_IMPORTS}
    try:
        yield {first: (*proc.communicate(timeout=120), proc.returncode)
               for first, proc in procs.items()}
    finally:
        for proc in procs.values():
            proc.kill()
            proc.wait()


@pytest.mark.parametrize("first", FIRST_IMPORTS)
def test_any_module_can_be_imported_first(first, fresh_interpreters):
    """The task modules and the network import each other's packages: no import cycle,
    whichever comes first in a fresh interpreter (a node imports the outputs first)."""
    stdout, stderr, returncode = fresh_interpreters[first]
    assert returncode == 0, stderr
    assert stdout.strip() == "detection,segmentation,depth"
