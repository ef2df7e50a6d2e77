"""A tiny CPU training run lowers the loss and writes a loadable model card."""

import csv

from mtl_split_core.model import ModelConfig, load_model
from mtl_split_core.train import train
from support.tiny_data import tiny_dataset


def test_tiny_training_lowers_the_loss(tmp_path):
    config = ModelConfig(backbone="mobilenetv3_small", input_size=(96, 64),
                         bottlenecks={"s16": 8})
    result = train(config, tiny_dataset(), tiny_dataset(4), tmp_path, epochs=12, batch_size=4,
                   lr=3e-3, device="cpu", pretrained=False, progress=False)
    rows = list(csv.DictReader(open(tmp_path / "train_log.csv")))
    assert float(rows[-1]["segmentation"]) < float(rows[0]["segmentation"])
    assert float(rows[-1]["depth"]) < float(rows[0]["depth"])
    model, card = load_model(tmp_path / "model")
    assert card["trained"]["epochs"] == 12 and "float" in result and "codec" in result
