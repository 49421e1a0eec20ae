"""Experiment configs: strict loading (unknown keys, wrong types, ranges) and round trips."""

from __future__ import annotations

import dataclasses
import tomllib

import pytest
from conftest import tiny_config

from safeknob.config import (
    ConfigError,
    ExperimentConfig,
    from_dict,
    list_experiments,
    load_experiment,
)
from safeknob.methods import check_specs
from safeknob.stages.common import toml_dumps


def _tiny() -> dict:
    return tiny_config().to_dict()


def _with(path: tuple[str, ...], value) -> dict:
    """The tiny config's dict with ``path`` set to ``value``."""
    data = _tiny()
    node = data
    for key in path[:-1]:
        node = node.setdefault(key, {})
    node[path[-1]] = value
    return data


@pytest.mark.parametrize(
    ("path", "value", "needle"),
    [
        (("typo_top",), 1, "typo_top"),
        (("experts", "bogus_key"), 3, "bogus_key"),
        (("ppo", "learning_rat"), 0.1, "learning_rat"),
        (("env", "kwarg"), {}, "kwarg"),
        (("ppo", "inner", "x"), 1, "inner"),
    ],
    ids=["top", "experts", "ppo", "env", "nested-table"],
)
def test_unknown_key_is_rejected_naming_it(path, value, needle):
    with pytest.raises(ConfigError, match=needle) as info:
        from_dict(_with(path, value))
    assert "allowed:" in str(info.value)
    if len(path) > 1:  # the table is named too
        assert f"[{path[0]}]" in str(info.value)


@pytest.mark.parametrize(
    ("path", "value", "needle"),
    [
        (("ppo", "n_envs"), "four", "ppo.n_envs must be an integer"),
        (("ppo", "n_envs"), 2.5, "ppo.n_envs must be an integer"),
        (("ppo", "n_envs"), True, "ppo.n_envs must be an integer"),
        (("ppo", "learning_rate"), "fast", "ppo.learning_rate must be a number"),
        (("ppo", "learning_rate"), False, "ppo.learning_rate must be a number"),
        (("ppo", "net_arch"), 16, "ppo.net_arch must be a list"),
        (("blend", "alphas"), ["a"], "blend.alphas"),
        (("experts", "deterministic"), 1, "experts.deterministic must be true or false"),
        (("name",), 3, "name must be a string"),
        (("env", "id"), ["x"], "env.id must be a string"),
        (("env", "cost_fn"), 3, "env.cost_fn must be a string"),
        (("env", "kwargs"), [1, 2], "env.kwargs must be a table"),
        (("ppo",), 3, "[ppo] must be a table"),
    ],
)
def test_wrong_type_is_rejected_naming_the_key(path, value, needle):
    with pytest.raises(ConfigError) as info:
        from_dict(_with(path, value))
    assert needle in str(info.value)


@pytest.mark.parametrize(
    ("path", "value", "needle"),
    [
        (("experts", "cost_limit"), -1.0, "experts.cost_limit must be >= 0"),
        (("experts", "cost_limit"), float("nan"), "experts.cost_limit must be >= 0"),
        (("blend", "alphas"), [0.0, 1.5], "blend.alphas must be in [0, 1]"),
        (("blend", "alphas"), [-0.1], "blend.alphas must be in [0, 1]"),
        (("blend", "alphas"), [float("nan")], "blend.alphas must be in [0, 1]"),
        (("demos", "episodes"), 0, "demos.episodes must be >= 1"),
        (("eval", "episodes"), 0, "eval.episodes must be >= 2"),
        (("ppo", "n_envs"), 0, "ppo.n_envs must be >= 1"),
        (("experts", "safe_steps"), -5, "experts.safe_steps must be >= 1"),
        (("blend", "n_envs"), -1, "blend.n_envs must be 0 or >= 1"),
        (("blend", "n_epochs"), -2, "blend.n_epochs must be 0 or >= 1"),
        (("blend", "methods"), ["bc-mixx"], "unknown method 'bc-mixx'"),
        (("blend", "methods"), ["mixture+cal"], "unknown method 'mixture+cal'"),
        (("blend", "methods"), ["bogus+cal"], "unknown method 'bogus+cal'"),
    ],
)
def test_out_of_range_values_are_rejected(path, value, needle):
    with pytest.raises(ConfigError) as info:
        cfg = from_dict(_with(path, value))
        check_specs(cfg.blend.methods)  # method names: the registry, one layer up
    assert needle in str(info.value)


def test_calibrated_methods_are_allowed():
    cfg = from_dict(_with(("blend", "methods"), ["bc-mix", "bc-mix+cal", "budget-env+cal"]))
    assert cfg.blend.methods[1] == "bc-mix+cal"


def test_zero_cost_limit_is_allowed():
    assert from_dict(_with(("experts", "cost_limit"), 0)).experts.cost_limit == 0.0


def test_malformed_toml_names_the_file(tmp_path):
    path = tmp_path / "broken.toml"
    path.write_text(toml_dumps(_tiny()).replace("[ppo]", "[ppo"))
    with pytest.raises(ConfigError, match="malformed TOML") as info:
        load_experiment(str(path))
    assert str(path) in str(info.value)


def test_file_errors_name_the_file(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text(toml_dumps(_with(("experts", "cost_limit"), -2.0)))
    with pytest.raises(ConfigError) as info:
        load_experiment(str(path))
    assert str(path) in str(info.value) and "cost_limit" in str(info.value)


def test_unknown_experiment_name_lists_known_ones():
    with pytest.raises(ConfigError, match="unknown experiment 'no-such-exp'") as info:
        load_experiment("no-such-exp")
    assert "hazard-grid" in str(info.value)


def test_missing_experiment_file(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_experiment(str(tmp_path / "nope.toml"))


def _round_trip(cfg: ExperimentConfig) -> ExperimentConfig:
    return from_dict(tomllib.loads(toml_dumps(cfg.to_dict())))


@pytest.mark.parametrize(
    "cfg",
    [
        ExperimentConfig(),
        tiny_config(),
        tiny_config(
            name="odd",
            env={
                "id": "tests.mod:Env-v0",
                "cost_fn": "pkg.mod:cost",
                "kwargs": {
                    "layout": 'S.\\"H\n..G ü',
                    "nested": {"a": [1, 2.5, True], "b": "x"},
                    "empty": [],
                    "small": 1e-9,
                    "neg": -3,
                },
            },
            ppo={"net_arch": [], "learning_rate": 3e-4},
            blend={"alphas": [0.0, 1 / 3, 1.0]},
        ),
    ],
    ids=["default", "tiny", "odd-values"],
)
def test_toml_dumps_round_trip(cfg):
    back = _round_trip(cfg)
    assert back == cfg
    assert back.to_dict() == cfg.to_dict()


def test_round_trip_through_a_file(tmp_path):
    path = tmp_path / "tiny.toml"
    path.write_text(toml_dumps(tiny_config().to_dict()))
    assert load_experiment(str(path)) == tiny_config()


@pytest.mark.parametrize("path", list_experiments(), ids=lambda p: p.stem)
def test_bundled_experiments_load(path):
    cfg = load_experiment(str(path))
    assert cfg.name == path.stem
    assert load_experiment(path.stem) == cfg  # by name too
    assert _round_trip(cfg) == cfg


def test_default_experiment_is_hazard_grid():
    assert load_experiment(None).name == "hazard-grid"


def test_quick_mode_trains_one_seed():
    """``reproduce --quick`` is a fast look: the first training seed only."""
    from safeknob.config import ExperimentConfig, quick

    exp = ExperimentConfig()
    exp = exp.replace(blend=dataclasses.replace(exp.blend, seeds=(3, 1, 2)))
    assert quick(exp).blend.seeds == (3,)
