"""A tiny CPU training run lowers the loss and writes a loadable model card."""

import csv

import numpy as np

from mtl_split_core.model import ModelConfig, load_model
from mtl_split_core.train import train


def _data(n=8):
    rng = np.random.default_rng(0)
    images = np.zeros((n, 64, 96, 3), np.uint8)
    seg = np.zeros((n, 64, 96), np.uint8)
    depth = np.full((n, 64, 96), 8.0, np.float32)
    boxes, labels = [], []
    for i in range(n):
        x, y = rng.integers(5, 60), rng.integers(5, 30)
        images[i, y:y + 20, x:x + 25] = (200, 40, 40)
        seg[i, y:y + 20, x:x + 25] = 4
        depth[i, y:y + 20, x:x + 25] = 2.0
        boxes.append(np.array([[x, y, x + 25, y + 20]], np.float32))
        labels.append(np.array([0]))
    return {"images": images, "seg": seg, "depth": depth, "boxes": boxes, "labels": labels}


def test_tiny_training_lowers_the_loss(tmp_path):
    config = ModelConfig(backbone="mobilenetv3_small", input_size=(96, 64),
                         bottlenecks={"s16": 8})
    result = train(config, _data(), _data(4), tmp_path, epochs=12, batch_size=4, lr=3e-3,
                   device="cpu", pretrained=False, progress=False)
    rows = list(csv.DictReader(open(tmp_path / "train_log.csv")))
    assert float(rows[-1]["segmentation"]) < float(rows[0]["segmentation"])
    assert float(rows[-1]["depth"]) < float(rows[0]["depth"])
    model, card = load_model(tmp_path / "model")
    assert card["trained"]["epochs"] == 12 and "float" in result and "codec" in result
