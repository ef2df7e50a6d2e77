"""Helpers for tests that run our nodes as processes: arguments, waiting, parameters, signals."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import rclpy
from rclpy.parameter import Parameter
from rclpy.parameter_client import AsyncParameterClient

from support.procs import stop

NODE = "from {module}.node import main; import sys; sys.exit(main())"
# Words that must never appear in a node's or tool's output after a signal.
UNCLEAN = ("Traceback", "terminate called", "Error", "exit code -")


def tiny_model(path) -> str:
    """A small untrained model saved to ``path`` (CPU-fast; for plumbing tests)."""
    from mtl_split_core.model import ModelConfig, MultiTaskSplitNet, save_model
    net = MultiTaskSplitNet(ModelConfig(name="tiny", backbone="mobilenetv3_small",
                                        input_size=(128, 96), bottlenecks={"s16": 8},
                                        depth_reference_focal=100.0))
    save_model(path, net.eval())
    return str(path)


def node_args(module: str, *, code: str = NODE, **params) -> list[str]:
    out = ["-c", code.format(module=module), "--ros-args"]
    for k, v in params.items():
        out += ["-p", f"{k}:={v}"]
    return out


def wait_for(node, predicate, timeout: float = 60.0, procs=()) -> bool:
    """Spin ``node`` until ``predicate()``; fail at once when one of ``procs`` died."""
    end = time.time() + timeout
    while time.time() < end:
        rclpy.spin_once(node, timeout_sec=0.1)
        if predicate():
            return True
        for p in procs:
            assert p.poll() is None, f"process died:\n{stop(p)}"
    return False


def set_params(node, target: str, values: dict, timeout: float = 30.0):
    """Set parameters of node ``target`` over its parameter service; the results in order."""
    client = AsyncParameterClient(node, target)
    assert client.wait_for_services(timeout_sec=timeout), f"no parameter service on {target}"
    future = client.set_parameters([Parameter(k, value=v) for k, v in values.items()])
    rclpy.spin_until_future_complete(node, future, timeout_sec=timeout)
    assert future.done(), "set_parameters timed out"
    return future.result().results


def get_param(node, target: str, name: str, timeout: float = 30.0):
    client = AsyncParameterClient(node, target)
    assert client.wait_for_services(timeout_sec=timeout)
    future = client.get_parameters([name])
    rclpy.spin_until_future_complete(node, future, timeout_sec=timeout)
    return Parameter.from_parameter_msg(
        _named(name, future.result().values[0])).value


def _named(name, value):
    from rcl_interfaces.msg import Parameter as ParameterMsg
    return ParameterMsg(name=name, value=value)


def signal_and_wait(proc: subprocess.Popen, sig: int, timeout: float = 30.0) -> tuple[int, str]:
    """Send ``sig`` to ``proc`` only (not its group) and return (exit code, output)."""
    os.kill(proc.pid, sig)
    try:
        code = proc.wait(timeout)
    except subprocess.TimeoutExpired:
        code = None
    return code, stop(proc)


def assert_clean_exit(code: int | None, log: str, sig: int) -> None:
    name = signal.Signals(sig).name
    assert code == 0, f"exit code {code} after {name}:\n{log[-3000:]}"
    for word in UNCLEAN:
        assert word not in log, f"{word!r} in the output after {name}:\n{log[-3000:]}"
