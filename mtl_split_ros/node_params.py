"""Parameters several nodes declare (one definition each): the network's runtime, the executor,
and the supervision of a node's worker (diagnostics and watchdog)."""

from __future__ import annotations

from mtl_split_core.runtime.backends import BACKENDS
from mtl_split_core.runtime.device import PRECISIONS
from mtl_split_ros.node_main import EXECUTORS
from mtl_split_ros.params import Param, positive

# Parameters every node that runs the network has (edge and server).
RUNTIME_PARAMS = [
    Param("device", "auto", "auto (CUDA if present, else CPU), cpu, cuda or cuda:N."),
    Param("precision", "fp32", "Network precision (fp16 only on CUDA).", PRECISIONS),
    Param("backend", "torch", "Inference runtime: torch, or onnxruntime (the files of "
          "`mtl-split export`; CUDA/TensorRT providers when installed).", BACKENDS),
    Param("onnx_dir", "", "Folder of the ONNX export for backend onnxruntime; '' = the model "
          "folder's onnx/."),
    Param("engine_cache", "", "TensorRT engine cache folder (onnxruntime's TensorRT provider); "
          "'' = none."),
]


def executor_param(default: str) -> Param:
    """The ``executor`` parameter (node_main.make_executor) with a node's own default."""
    return Param("executor", default, "ROS executor: single (rclpy's SingleThreadedExecutor) or "
                 "events (rclpy's EventsExecutor, C++, Kilted and newer: far less Python per "
                 "message; falls back to single, with a warning, where rclpy lacks it).",
                 EXECUTORS)


# Diagnostics and the watchdog of a node's worker.
SUPERVISION_PARAMS = [
    Param("diagnostics_period", 1.0, "Seconds between /diagnostics messages.", check=positive,
          dynamic=True),
    Param("stall_timeout", 10.0, "Seconds input may wait untaken before the watchdog reports "
          "the worker stalled (ERROR on /diagnostics) and starts a new one.", check=positive),
    Param("diagnostics_window", 10.0, "Seconds of history behind the /diagnostics level: WARN "
          "while inputs were rejected, ERROR while the worker was restarted, within it.",
          check=positive),
]
