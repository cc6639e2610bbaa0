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


@pytest.mark.parametrize("name", sorted(p.stem for p in PRESETS_DIR.glob("*.yaml")))
def test_every_preset_adapts_to_a_data_set_without_its_tasks(name):
    adapted, notes = load_config(name).for_tasks(["income", "never_married"])
    assert set(adapted.weighting.gamma) | set(adapted.weighting.weights) <= {
        "income",
        "never_married",
    }
    assert set(adapted.losses) <= {"income", "never_married"}
    if name == "ple":
        assert notes == [
            "weighting.gamma names ['click'], which this data set lacks (tasks: "
            "['income', 'never_married']): ignored"
        ]


def test_for_tasks_keeps_settings_of_present_tasks_and_drops_the_rest():
    config = load_config(
        "ple",
        [
            "weighting.weights={click: 2.0, like: 3.0}",
            "losses={watch_time: huber, rating: mse}",
            "position_bias_tasks=[click, share]",
        ],
    )
    adapted, notes = config.for_tasks(["click", "watch_time"])
    assert adapted.weighting.gamma == {"click": 0.95}
    assert adapted.weighting.weights == {"click": 2.0}
    assert adapted.losses == {"watch_time": "huber"}
    assert adapted.position_bias_tasks == ["click"]
    assert len(notes) == 3


def test_a_monitor_naming_an_absent_task_is_an_error_not_a_note():
    config = load_config("default", ["early_stopping.monitor=income.auc"])
    with pytest.raises(ValueError, match="names no task"):
        config.for_tasks(["click"])
    adapted = config.for_tasks(["click"], ["income"])[0]  # a derived objective counts
    assert adapted.early_stopping == config.early_stopping


@pytest.mark.parametrize("monitor", ["auc", "income.", ".auc", "income.accuracy"])
def test_malformed_monitors_are_refused(monitor):
    with pytest.raises(ValueError, match=r"TASK\.METRIC"):
        load_config("default", [f"early_stopping.monitor={monitor}"])
