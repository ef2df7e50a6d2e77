"""Model configuration as data: what the model card stores and the network is built from."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import NoReturn, cast

from mtl_split_core.backbones import BACKBONES, SPLIT_NAMES
from mtl_split_core.classes import DETECTION_CLASSES, IGNORE_ID, SEGMENTATION_CLASSES
from mtl_split_core.codec import model_codecs
from mtl_split_core.entropy_tables import EntropyTablesError, tables_of
from mtl_split_core.tasks.registry import DEFAULT_TASKS, task_names

CARD_VERSION = 1


class ModelConfigError(ValueError):
    """A model configuration that cannot be built; the message names the field."""


@dataclass
class ModelConfig:
    name: str = "mtl_split_efficientnet_lite0"
    backbone: str = "efficientnet_lite0"
    input_size: tuple[int, int] = (320, 240)  # (W, H)
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    detection_classes: tuple[str, ...] = DETECTION_CLASSES
    segmentation_classes: tuple[str, ...] = SEGMENTATION_CLASSES
    tasks: tuple[str, ...] = DEFAULT_TASKS
    # Bottleneck channels per split point (None = send the stage output as it is).
    bottlenecks: dict[str, int | None] = field(
        default_factory=lambda: {name: None for name in SPLIT_NAMES})
    default_split: str = "s16"
    codec: str = "q8-zstd/1"
    train_quant_bits: int | None = 8  # fake quantization at the split while training
    neck_channels: int = 64
    # Splits served by a neck and heads of their own (the others share ``neck``/``heads``):
    # a model fine-tuned to serve more splits leaves its default split's path untouched
    # (``train(per_split_heads=True)``). Empty in older cards.
    per_split_heads: tuple[str, ...] = ()
    # Of those, the splits whose whole server half is their own: also the backbone stages after
    # the split (copies of the shared ones, ``split_stages``) and a neck that climbs to stride
    # 8 in learned steps (``train(per_split_server=True)``). Empty in older cards.
    per_split_server: tuple[str, ...] = ()
    min_depth: float = 0.1
    max_depth: float = 60.0
    # Focal length (model-input pixels) the depth head is calibrated to. Set: the head predicts
    # depth as this camera would see it and the server rescales by the real focal length
    # (depth scales with focal for the same image), so one model serves cameras of any field
    # of view and zoom augmentation stays consistent. None: depth is taken as is.
    depth_reference_focal: float | None = None
    # Frozen entropy tables of the entropy-coded codecs eb-<k>/1 (entropy_tables.py), or None:
    # the model then has the codecs every model has (codec.CODECS) only.
    entropy: dict | None = None

    def __post_init__(self) -> None:
        # A card's JSON gives lists: tuples of the length given (validate() checks input_size).
        self.input_size = cast("tuple[int, int]", tuple(int(v) for v in self.input_size))
        self.mean = cast("tuple[float, float, float]", tuple(self.mean))
        self.std = cast("tuple[float, float, float]", tuple(self.std))
        self.detection_classes = tuple(self.detection_classes)
        self.segmentation_classes = tuple(self.segmentation_classes)
        self.tasks = tuple(self.tasks)
        self.per_split_heads = tuple(self.per_split_heads)
        self.per_split_server = tuple(self.per_split_server)
        self.bottlenecks = {name: self.bottlenecks.get(name) for name in SPLIT_NAMES}
        self.validate()

    def validate(self) -> None:
        def bad(field_name: str, message: str) -> NoReturn:
            raise ModelConfigError(f"model config field '{field_name}': {message}")
        if self.backbone not in BACKBONES:
            bad("backbone", f"{self.backbone!r} unknown; expected one of {', '.join(BACKBONES)}")
        if len(self.input_size) != 2 or min(self.input_size) < 32 or \
                any(v % 8 for v in self.input_size):
            bad("input_size", f"{self.input_size} must be (W, H), multiples of 8")
        if not self.tasks or set(self.tasks) - set(task_names()) or \
                len(set(self.tasks)) != len(self.tasks):
            bad("tasks", f"{self.tasks} must be distinct registered tasks "
                f"({', '.join(task_names())})")
        if self.default_split not in SPLIT_NAMES:
            bad("default_split", f"{self.default_split!r} not in {SPLIT_NAMES}")
        try:
            tables = tables_of(self.entropy)
        except EntropyTablesError as err:
            bad("entropy", str(err))
        if tables is not None and self.bottlenecks.get(tables.split) != tables.channels:
            bad("entropy", f"tables for {tables.channels} channels at split {tables.split}; "
                f"that split's bottleneck has {self.bottlenecks.get(tables.split)}")
        if self.codec not in model_codecs(tables):
            bad("codec", f"{self.codec!r} not in {model_codecs(tables)}")
        if set(self.per_split_heads) - set(SPLIT_NAMES) or \
                len(set(self.per_split_heads)) != len(self.per_split_heads) or \
                self.default_split in self.per_split_heads:
            bad("per_split_heads", f"{list(self.per_split_heads)} must be distinct split points "
                f"of {SPLIT_NAMES} other than the default split {self.default_split}")
        if not set(self.per_split_server) <= set(self.per_split_heads) or \
                len(set(self.per_split_server)) != len(self.per_split_server):
            bad("per_split_server", f"{list(self.per_split_server)} must be distinct splits of "
                f"per_split_heads {list(self.per_split_heads)}")
        for name, k in self.bottlenecks.items():
            if k is not None and (not isinstance(k, int) or k < 1):
                bad("bottlenecks", f"{name}: {k!r} must be a positive int or None")
        if self.train_quant_bits not in (None, 4, 8):
            bad("train_quant_bits", f"{self.train_quant_bits!r} must be 4, 8 or None")
        if not 0 < self.min_depth < self.max_depth:
            bad("min_depth", "need 0 < min_depth < max_depth")
        if self.depth_reference_focal is not None and not self.depth_reference_focal > 0:
            bad("depth_reference_focal", f"{self.depth_reference_focal!r} must be > 0 or None")
        if len(self.segmentation_classes) > IGNORE_ID:
            bad("segmentation_classes", f"{len(self.segmentation_classes)} classes; ids travel "
                f"as mono8 with {IGNORE_ID} = ignore, so at most {IGNORE_ID}")
        if len(set(self.segmentation_classes)) != len(self.segmentation_classes):
            bad("segmentation_classes", "class names must be distinct")
        if "detection" in self.tasks and not self.detection_classes:
            bad("detection_classes", "a detection head needs at least one class")
        n_stuff = len(self.segmentation_classes) - len(self.detection_classes)
        if n_stuff < 1 or self.segmentation_classes[n_stuff:] != self.detection_classes:
            bad("segmentation_classes", "must list stuff classes first, then the detection "
                "classes in the same order")

    def to_dict(self) -> dict:
        d = asdict(self)
        for key in ("input_size", "mean", "std", "detection_classes", "segmentation_classes",
                    "tasks", "per_split_heads", "per_split_server"):
            d[key] = list(d[key])
        return d

    @classmethod
    def from_dict(cls, d: dict) -> ModelConfig:
        known = set(cls.__dataclass_fields__)
        unknown = set(d) - known
        if unknown:
            raise ModelConfigError(f"unknown model config fields: {sorted(unknown)}")
        return cls(**d)
