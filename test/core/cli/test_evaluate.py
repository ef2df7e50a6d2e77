"""`mtl-split eval --split-set`: a labelled split by default, a one-line error naming the
labelled splits otherwise (Cityscapes labels train and val; its test labels are withheld)."""

import pytest

from mtl_split_core.cli.evaluate import split_to_score
from mtl_split_core.cli.main import main
from mtl_split_core.errors import InputError


@pytest.mark.parametrize("data, expected", [
    (["data/sim"], "test"),                                    # a bare folder = sim data
    (["cityscapes:/d/cityscapes"], "val"),
    (["cityscapes:/d/cityscapes?test=val"], "test"),           # val served as test
    (["data/sim", "cityscapes:/d/cityscapes"], "val"),         # the split both label
    (["kitti:/d/kitti", "folder:/d/yard"], "test"),
])
def test_default_is_a_split_every_data_set_labels(data, expected):
    assert split_to_score(data, None) == expected


def test_a_requested_split_must_be_labelled():
    assert split_to_score(["cityscapes:/d/c"], "train") == "train"
    with pytest.raises(InputError, match=r"--split-set test: cityscapes:/d/c labels train, "
                                         r"val; sim:data/sim labels train, val, test"):
        split_to_score(["cityscapes:/d/c", "data/sim"], "test")


def test_unlabelled_split_is_one_line_and_exit_2(capsys):
    # Checked before the model loads: no model or data needed to get the answer.
    assert main(["eval", "--data", "cityscapes:/nowhere", "--split-set", "test"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cityscapes:/nowhere labels train, val" in err


def test_split_set_has_help(capsys):
    with pytest.raises(SystemExit):
        main(["eval", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "--split-set {train,val,test}" in help_text
    assert "Cityscapes labels only train and val" in help_text


def test_codecs_go_with_their_split_kind():
    from mtl_split_core.cli.evaluate import codecs_to_score
    from mtl_split_core.image_codec import PROFILED_IMAGE_CODECS
    assert codecs_to_score("input", "all") == [None, *PROFILED_IMAGE_CODECS]
    assert codecs_to_score("input", "webp-q70/1") == ["webp-q70/1"]
    assert codecs_to_score(None, "q4-zstd/1") == ["q4-zstd/1"]
    for split, codec in (("input", "q4-zstd/1"), ("s16", "webp-q80/1"), (None, "jpeg-q90/1")):
        with pytest.raises(InputError):
            codecs_to_score(split, codec)


def test_an_unknown_codec_is_one_line_and_exit_2(capsys):
    with pytest.raises(SystemExit) as info:
        main(["eval", "--data", "x", "--codec", "webp-q101/1"])
    assert info.value.code == 2
    assert "webp-q101/1" in capsys.readouterr().err
