from pathlib import Path

import pytest

from training.train.config import PRESETS_DIR, TrainConfig, dump_config, load_config

REQUIRED_PRESETS = ["default", "shared_bottom", "omoe", "mmoe", "cgc", "ple", "aitm"]


@pytest.mark.parametrize("name", REQUIRED_PRESETS)
def test_every_architecture_preset_resolves(name):
    config = load_config(name)
    assert config.arch.name == ("mmoe" if name == "default" else name)


def test_presets_override_only_the_keys_they_list():
    ple = load_config("ple")
    defaults = TrainConfig()
    assert ple.weighting.kind == "ple_schedule"
    assert ple.weighting.gamma == {"click": 0.95}
    assert (ple.batch_size, ple.lr, ple.esmm) == (defaults.batch_size, defaults.lr, defaults.esmm)


def test_overrides_set_nested_keys_with_yaml_values():
    config = load_config(
        "mmoe", ["arch.n_experts=8", "weighting.kind=dwa", "weighting.weights.click=2", "epochs=1"]
    )
    assert config.arch.n_experts == 8
    assert config.arch.expert_hidden == (32, 16)  # the preset's other arch keys survive
    assert config.weighting.kind == "dwa"
    assert config.weighting.weights == {"click": 2.0}
    assert config.epochs == 1


def test_unknown_keys_and_presets_are_rejected_with_the_choices():
    with pytest.raises(ValueError, match="learning_rate"):
        load_config("default", ["learning_rate=0.1"])
    with pytest.raises(ValueError, match="mmoe"):
        load_config("nope")
    with pytest.raises(ValueError, match="key=value"):
        load_config("default", ["epochs"])


def test_resolved_config_round_trips_through_yaml(tmp_path: Path):
    config = load_config("ple", ["seed=7"])
    dump_config(config, tmp_path / "config.yaml")
    assert load_config(str(tmp_path / "config.yaml")) == config


def test_presets_directory_holds_the_required_presets():
    assert {p.stem for p in PRESETS_DIR.glob("*.yaml")} >= set(REQUIRED_PRESETS)


def test_an_empty_mapping_override_clears_a_preset_section():
    # the ple preset decays click's weight; on data without a click task the user clears it
    assert load_config("ple").weighting.gamma == {"click": 0.95}
    assert load_config("ple", ["weighting.gamma={}"]).weighting.gamma == {}
    assert load_config("ple", ["weighting.gamma.income=0.9"]).weighting.gamma == {
        "click": 0.95,
        "income": 0.9,
    }


def test_split_seed_defaults_to_the_seed_and_can_be_pinned():
    assert load_config("default", ["seed=7"]).data_split_seed == 7
    pinned = load_config("default", ["seed=7", "split_seed=0"])
    assert (pinned.seed, pinned.data_split_seed) == (7, 0)
