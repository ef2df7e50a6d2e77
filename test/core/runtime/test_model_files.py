"""The packaged default model is found from the source tree and from an install prefix."""

import pytest

from mtl_split_core.runtime.model_files import models_dirs, resolve_model_path


def test_default_model_resolves_and_loads():
    from mtl_split_core.model import load_model
    path = resolve_model_path("")
    model, card = load_model(path)
    assert card["default_split"] in model.split_names and len(card["fingerprint"]) == 16


def test_unknown_model_names_the_searched_places(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        resolve_model_path(str(tmp_path / "nope"))


def test_env_override_comes_first(tmp_path, monkeypatch):
    (tmp_path / "mine").mkdir()
    monkeypatch.setenv("MTL_SPLIT_MODELS", str(tmp_path))
    assert models_dirs()[0] == tmp_path
    assert resolve_model_path("mine") == tmp_path / "mine"


def test_the_card_alone_is_read_for_a_model_setting(tmp_path):
    from mtl_split_core.runtime.errors import ConfigError
    from mtl_split_core.runtime.model_files import read_model_card_param
    assert len(read_model_card_param("")["fingerprint"]) == 16
    with pytest.raises(ConfigError, match="model.*not found"):
        read_model_card_param(str(tmp_path / "nope"))
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "card.json").write_text("{not json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        read_model_card_param(str(tmp_path / "broken"))
