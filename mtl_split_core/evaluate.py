"""Evaluate a model on sim frames for one split point and codec (None = unsplit float).

The codec path is the deployment path: edge -> encode -> decode -> server, so the cost of the
bottleneck and of quantization is measured, not assumed.
"""

from __future__ import annotations

import numpy as np
import torch
from tqdm import tqdm

from mtl_split_core.codec import decode, encode
from mtl_split_core.metrics import DepthMetric, DetectionMetric, SegmentationMetric
from mtl_split_core.model.heads import decode_detections


@torch.inference_mode()
def evaluate(model, data: dict, split: str | None = None, codec: str | None = None,
             device="cpu", batch_size: int = 16, score_threshold: float = 0.05,
             progress: bool = False) -> dict:
    """Metrics over ``data`` (as from load_shards; frames at the model's input size)."""
    model = model.to(device).eval()
    cfg = model.config
    det = DetectionMetric(len(cfg.detection_classes))
    seg_m = SegmentationMetric(len(cfg.segmentation_classes))
    dep = DepthMetric()
    n = len(data["images"])
    # fy of each frame (frames are at the network's input size); None if the data has none.
    k = data.get("k")
    focals = (torch.from_numpy(np.asarray(k, np.float32)[:, 4]).to(device)
              if k is not None and len(k) else None)
    nbytes = []
    for start in tqdm(range(0, n, batch_size), disable=not progress, desc="eval"):
        imgs = torch.from_numpy(data["images"][start:start + batch_size]).to(device)
        x = imgs.permute(0, 3, 1, 2).float() / 255.0
        z = model.edge(x, split)
        if codec is not None:
            encoded = [encode(zi, codec) for zi in z]
            nbytes += [e.nbytes for e in encoded]
            z = torch.stack([torch.from_numpy(decode(e)) for e in encoded]).to(device)
        focal = None if focals is None else focals[start:start + batch_size]
        out = model.server(z, split, out_hw=tuple(x.shape[-2:]), focal=focal)
        if "detection" in out or "heatmap" in out:
            for i, d in enumerate(decode_detections(out, score_threshold=score_threshold,
                                                    max_detections=100)):
                j = start + i
                det.update(d["boxes"].cpu().numpy(), d["scores"].cpu().numpy(),
                           d["class_ids"].cpu().numpy(), data["boxes"][j], data["labels"][j])
        if "segmentation" in out:
            pred = out["segmentation"].argmax(1).cpu().numpy()
            for i, p in enumerate(pred):
                seg_m.update(p, data["seg"][start + i])
        if "depth" in out:
            pred = out["depth"][:, 0].float().cpu().numpy()
            for i, p in enumerate(pred):
                dep.update(p, data["depth"][start + i])
    result = {"frames": n, "split": split or cfg.default_split, "codec": codec or "float"}
    if "detection" in cfg.tasks:
        result["detection"] = det.compute()
    if "segmentation" in cfg.tasks:
        result["segmentation"] = seg_m.compute()
    if "depth" in cfg.tasks:
        result["depth"] = dep.compute()
    if nbytes:
        result["bytes_per_frame"] = float(np.mean(nbytes))
    return result


def headline(result: dict) -> dict:
    """The three numbers people compare: mAP@0.5, mIoU, delta<1.25."""
    return {"mAP50": result.get("detection", {}).get("mAP50"),
            "mAP50_95": result.get("detection", {}).get("mAP50_95"),
            "mIoU": result.get("segmentation", {}).get("mIoU"),
            "delta1": result.get("depth", {}).get("delta1"),
            "abs_rel": result.get("depth", {}).get("abs_rel")}
