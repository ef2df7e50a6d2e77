"""What a task is: the contract every entry of the task registry fulfils.

A task owns everything that differs between detection, segmentation, depth and any later head:
its head (built from the neck's width and the model config), its training targets (from a batch
of augmented samples) and loss, its post-processing of the network outputs into result fields,
its metric, and the names/kinds of the outputs it produces. The network, the multi-task loss,
training, evaluation and the server runner loop over the registered tasks and know none of this.

The core stays ROS-free: a task only *names* its outputs (topic suffix + kind); the ROS adapter
maps kinds to messages.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import cv2
import numpy as np
import torch
from torch import nn

if TYPE_CHECKING:  # the model package imports the registry; avoid the cycle at run time
    from mtl_split_core.model.config import ModelConfig


@dataclass(frozen=True)
class OutputSpec:
    """One output a task produces: ``suffix`` under the node's ``mtl_split/`` namespace, the
    ``kind`` of data (the ROS adapter has one converter per kind: mtl_split_ros/outputs.py
    ``KINDS``) and ``field``, the result field it is made from ('' = the task's first).
    ``optional``: the server has a ``publish_<suffix>`` switch for it (default on).

    Any task can publish a per-pixel map at the output resolution with a map kind:
    ``class_image`` / ``mask_image`` (uint8 -> mono8), ``float_image`` (float32 -> 32FC1),
    ``rgb_image`` (uint8 (h, w, 3) -> rgb8). Other kinds: ``class_color_image`` (class ids
    coloured), ``point_cloud`` (a depth map, coloured by segmentation), ``detections_2d`` /
    ``detections_3d`` (vision_msgs), ``box_markers_3d`` (RViz), ``label_info`` (class names,
    published once).
    """

    suffix: str
    kind: str
    field: str = ""
    optional: bool = False


@dataclass(frozen=True)
class PostprocessContext:
    """Where the network outputs sit in the source image.

    ``crop`` (x0, y0, x1, y1): the image content inside the network input, in model pixels
    (None = all of it); ``transform`` (scale_x, scale_y, offset_x, offset_y) maps source to model
    pixels; ``source_size`` (W, H) clips source-pixel results (None = no clipping).
    """

    crop: tuple[int, int, int, int] | None = None
    transform: tuple[float, float, float, float] = (1.0, 1.0, 0.0, 0.0)
    source_size: tuple[int, int] | None = None
    score_threshold: float = 0.3
    max_detections: int = 50

    def window(self) -> tuple[slice, slice]:
        """(rows, cols) slices of the content region of an output map."""
        if self.crop is None:
            return slice(None), slice(None)
        x0, y0, x1, y1 = self.crop
        return slice(y0, y1), slice(x0, x1)


class TaskMetric(Protocol):
    """A metric accumulator fed one frame at a time."""

    def update(self, prediction: Mapping[str, Any], truth: Mapping[str, Any]) -> None:
        """``prediction``: result fields of one frame; ``truth``: that frame's ground truth."""

    def compute(self) -> dict:
        """The metric over every frame so far."""


def labelled_field(task_name: str) -> str:
    """The dataset-dict / ground-truth field saying which frames carry ``task_name``'s label
    (``has_<task>``, (N,) bool; absent = every frame is labelled)."""
    return f"has_{task_name}"


def is_labelled(truth: Mapping[str, Any], task_name: str) -> bool:
    """Whether one frame's ground truth carries ``task_name``'s label (absent flag = yes)."""
    return bool(truth.get(labelled_field(task_name), True))


class Task:
    """Base class of a registered task; subclasses set the class attributes and override the
    methods. Heads are ``nn.Module``s called as ``head(features, out_hw, focal)`` returning a
    dict of output tensors (keys unique across tasks)."""

    name: str = ""
    #: keys of the per-frame dict ``postprocess`` yields (ServerResult fields).
    result_fields: tuple[str, ...] = ()
    #: outputs a server publishes for this task.
    outputs: tuple[OutputSpec, ...] = ()
    #: headline number name -> key of this task's metric result.
    headline: Mapping[str, str] = {}

    def build_head(self, width: int, config: ModelConfig) -> nn.Module:
        raise NotImplementedError

    def classes(self, config: ModelConfig) -> tuple[str, ...]:
        """The class names the head's outputs index (() = none): fine-tuning keeps a head only
        while these stay the same."""
        return ()

    def targets(self, batch: Mapping[str, Any], config: ModelConfig) -> Any:
        """Training targets from a batch of augmented samples: ``image`` (N, 3, H, W) in [0, 1],
        ``seg`` (N, H, W), ``depth`` (N, H, W) metres, ``boxes``/``labels`` lists of tensors,
        ``ignore_boxes`` list of (M, 4) tensors (regions neither object nor background).

        Targets are a tensor with the batch first, or dicts / lists / tuples of such: the
        multi-task loss restricts them to the frames that carry this task's label by indexing
        the first axis."""
        raise NotImplementedError

    def loss(self, outputs: Mapping[str, torch.Tensor], targets: Any) -> torch.Tensor:
        raise NotImplementedError

    def postprocess(self, outputs: Mapping[str, torch.Tensor], context: PostprocessContext
                    ) -> list[dict[str, Any]]:
        """Network outputs of a batch -> one dict of ``result_fields`` (numpy) per sample."""
        raise NotImplementedError

    def metric(self, config: ModelConfig) -> TaskMetric:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


def truth_like(truth: np.ndarray, prediction: np.ndarray) -> np.ndarray:
    """A ground-truth map at the prediction's size (nearest: no invented labels or depths)."""
    truth = np.asarray(truth)
    h, w = np.shape(prediction)[:2]
    if truth.shape[:2] == (h, w):
        return truth
    return cv2.resize(truth, (w, h), interpolation=cv2.INTER_NEAREST)
