"""Fine-tuning keeps the base's contract and weights, except heads whose classes changed."""

import dataclasses

import pytest
import torch

from mtl_split_core.codec import FALLBACK_CODEC
from mtl_split_core.model import ModelConfig, MultiTaskSplitNet
from mtl_split_core.model.entropy_model import EntropyModel
from mtl_split_core.model.finetune import (
    changed_heads,
    fine_tune_config,
    freeze_edge,
    freeze_split_path,
    tables_if_edge_kept,
    transfer_weights,
)

BASE = ModelConfig(backbone="mobilenetv3_small", input_size=(96, 64), bottlenecks={"s16": 8},
                   depth_reference_focal=90.0)
CITY = dict(detection_classes=("car", "person"),
            segmentation_classes=("road", "sky", "car", "person"))


def _same(a, b, prefix):
    keys = [k for k in a if k.startswith(prefix)]
    assert keys
    return all(torch.equal(a[k], b[k]) for k in keys)


def test_the_contract_is_the_bases_and_names_classes_tasks_are_the_wanted_ones():
    wanted = ModelConfig(name="tuned", backbone="resnet18", input_size=(320, 240),
                         tasks=("detection", "depth"), **CITY)
    tuned = fine_tune_config(BASE, wanted)
    assert tuned == dataclasses.replace(BASE, name="tuned", tasks=("detection", "depth"), **CITY)


def test_heads_whose_classes_changed_start_afresh_the_rest_is_copied():
    torch.manual_seed(0)
    base = MultiTaskSplitNet(BASE)
    tuned_config = fine_tune_config(BASE, dataclasses.replace(
        BASE, detection_classes=BASE.detection_classes[::-1],   # same names, other order
        segmentation_classes=BASE.segmentation_classes[:4] + BASE.detection_classes[::-1]))
    assert changed_heads(BASE, tuned_config) == ["detection", "segmentation"]
    torch.manual_seed(1)
    model = MultiTaskSplitNet(tuned_config)
    fresh = {k: v.clone() for k, v in model.state_dict().items()}
    assert transfer_weights(model, base) == ["detection", "segmentation"]
    got, old = model.state_dict(), base.state_dict()
    for prefix in ("backbone.", "bottlenecks.", "neck.", "heads.depth."):
        assert _same(got, old, prefix), prefix
    for prefix in ("heads.detection.", "heads.segmentation."):
        assert _same(got, fresh, prefix) and not _same(got, old, prefix), prefix
    # Same class lists: every head is kept.
    same = MultiTaskSplitNet(fine_tune_config(BASE, dataclasses.replace(BASE, name="x")))
    assert transfer_weights(same, base) == []
    assert all(torch.equal(v, old[k]) for k, v in same.state_dict().items())


def test_a_new_task_gets_a_fresh_head():
    base = MultiTaskSplitNet(dataclasses.replace(BASE, tasks=("depth",)))
    model = MultiTaskSplitNet(BASE)
    assert transfer_weights(model, base) == ["detection", "segmentation"]


def test_another_architecture_is_refused():
    base = MultiTaskSplitNet(dataclasses.replace(BASE, bottlenecks={"s8": 4}))
    with pytest.raises(ValueError, match="lacks"):
        transfer_weights(MultiTaskSplitNet(BASE), base)


def test_freezing_stops_gradients_into_backbone_and_every_bottleneck_encoder():
    model = MultiTaskSplitNet(dataclasses.replace(BASE, bottlenecks={"s8": 4, "s16": 8}))
    frozen = freeze_edge(model)
    assert frozen and all(n.startswith(("backbone.", "bottlenecks.")) for n in frozen)
    assert any(".encoder." in n for n in frozen) and not any(".decoder." in n for n in frozen)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert any(n.startswith("bottlenecks.s8.decoder") for n in trainable)
    assert set(model.edge_state_dict()) >= set(frozen)  # and the batch-norm buffers
    assert any(k.endswith("running_mean") for k in model.edge_state_dict())


def test_a_split_that_gains_its_own_neck_and_heads_starts_from_the_shared_ones():
    torch.manual_seed(0)
    base = MultiTaskSplitNet(BASE)
    config = fine_tune_config(BASE, dataclasses.replace(
        BASE, bottlenecks={"s8": 4, "s16": 8}, per_split_heads=("s8",)))
    assert config.per_split_heads == ("s8",) and config.bottlenecks["s8"] == 4
    torch.manual_seed(1)
    model = MultiTaskSplitNet(config)
    assert transfer_weights(model, base) == []
    got = model.state_dict()
    assert all(torch.equal(got[k], v) for k, v in base.state_dict().items())
    for own, shared in ((model.split_necks["s8"], base.neck), (model.split_heads["s8"],
                                                                base.heads)):
        own_state = own.state_dict()
        assert own_state.keys() == shared.state_dict().keys()
        assert all(torch.equal(own_state[k], v) for k, v in shared.state_dict().items())
    # A later fine-tune keeps the splits' own (and may not drop them).
    again = fine_tune_config(config, dataclasses.replace(BASE, per_split_heads=("s32",)))
    assert again.per_split_heads == ("s8", "s32")


def test_freezing_a_split_path_leaves_only_the_other_splits_weights_to_learn():
    model = MultiTaskSplitNet(dataclasses.replace(
        BASE, bottlenecks={"s8": 4, "s16": 8}, per_split_heads=("s8",)))
    frozen = freeze_split_path(model, "s16")
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert {n.split(".")[0] for n in frozen} == {"backbone", "bottlenecks", "neck", "heads"}
    assert all(n.startswith("bottlenecks.s16.") for n in frozen if n.startswith("bottle"))
    assert trainable and all(n.startswith(("bottlenecks.s8.", "split_necks.s8.",
                                           "split_heads.s8.")) for n in trainable)


def test_a_split_that_gains_its_own_server_half_starts_from_the_bases_stages():
    """Its stages after the split are the base's backbone's; its neck's refinement steps (s32:
    two, from stride 32) start fresh, as the identity; the default split's path is frozen,
    the new stages are not."""
    torch.manual_seed(0)
    base = MultiTaskSplitNet(BASE)
    config = fine_tune_config(BASE, dataclasses.replace(
        BASE, bottlenecks={"s8": 4, "s16": 8, "s32": 8}, per_split_heads=("s8", "s32"),
        per_split_server=("s8", "s32")))
    assert config.per_split_server == ("s8", "s32")
    model = MultiTaskSplitNet(config)
    assert transfer_weights(model, base) == []
    got, shared = model.state_dict(), base.state_dict()
    stages = [k for k in got if k.startswith("split_stages.s8.")]
    assert stages and all(torch.equal(got[k], shared["backbone." + k.split(".", 2)[2]])
                          for k in stages)
    assert len(model.split_necks["s32"].refine) == 2 and len(model.split_necks["s8"].refine) == 0
    freeze_split_path(model, "s16")
    trainable = {n.split(".")[0] for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"bottlenecks", "split_necks", "split_heads", "split_stages"}


def test_entropy_tables_stay_only_where_the_edge_is_kept_bit_for_bit():
    block = EntropyModel(8, [0.5, 4.0]).freeze("s16", torch.randn(4, 8, 3, 4) * 3)
    tabled = dataclasses.replace(BASE, codec="eb-1/1", entropy=block)
    assert tables_if_edge_kept(tabled, edge_kept=True) == tabled
    # The edge learns: its symbols change, so the tables would code them badly. They go,
    # and the entropy-coded default codec with them.
    tuned = tables_if_edge_kept(tabled, edge_kept=False)
    assert tuned.entropy is None and tuned.codec == FALLBACK_CODEC
    assert tuned == dataclasses.replace(tabled, entropy=None, codec=FALLBACK_CODEC)
    plain = dataclasses.replace(BASE, codec="q8-zstd/1")
    assert tables_if_edge_kept(plain, edge_kept=False) == plain
