"""The on-disk demonstration record: round trip with per-step costs, corruption, spaces."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest
from imitation.data.types import TrajectoryWithRew

from safeknob import data
from safeknob.artifacts import ArtifactError
from safeknob.envs import make_env
from safeknob.evaluation.rollout import Episode

GRID = "safeknob/HazardGrid-v0"
TINY = {"layout": ["S.H.G", "....."], "slip": 0.1, "horizon": 20}


def discrete_episodes(n_states: int = 10, n: int = 4, seed: int = 0) -> list[Episode]:
    rng = np.random.default_rng(seed)
    out = []
    for k in range(n):
        t = int(rng.integers(1, 8))
        out.append(
            Episode(
                obs=rng.integers(0, n_states, t + 1),
                acts=rng.integers(0, 4, t),
                rews=rng.normal(size=t),
                costs=rng.choice([0.0, 0.5, 1.0], size=t),
                terminal=bool(k % 2),
            )
        )
    return out


def box_episodes(obs_dim: int = 3, act_dim: int = 2, n: int = 3) -> list[Episode]:
    rng = np.random.default_rng(1)
    return [
        Episode(
            obs=rng.normal(size=(6, obs_dim)).astype(np.float32),
            acts=rng.uniform(-1, 1, size=(5, act_dim)).astype(np.float32),
            rews=rng.normal(size=5),
            costs=rng.uniform(0, 2, size=5),
            terminal=False,
        )
        for _ in range(n)
    ]


def assert_same(a: TrajectoryWithRew, b: TrajectoryWithRew) -> None:
    np.testing.assert_array_equal(a.obs, b.obs)
    np.testing.assert_array_equal(a.acts, b.acts)
    np.testing.assert_array_equal(a.rews, b.rews)
    assert a.terminal == b.terminal
    np.testing.assert_array_equal(data.costs(a), data.costs(b))


@pytest.mark.parametrize("make", [discrete_episodes, box_episodes], ids=["discrete", "box"])
def test_save_load_round_trip_keeps_every_field_and_cost(tmp_path, make):
    episodes = make()
    trajs = data.to_trajectories(episodes)
    data.save(tmp_path / "ds", trajs)
    back = data.load(tmp_path / "ds")
    assert len(back) == len(trajs)
    for ep, a, b in zip(episodes, trajs, back, strict=True):
        assert_same(a, b)
        np.testing.assert_array_equal(data.costs(b), ep.costs)
        assert b.terminal == ep.terminal
        assert b.obs.shape == ep.obs.shape and b.acts.shape == ep.acts.shape
    assert data.has_costs(back)


def test_trajectories_without_infos_have_no_costs(tmp_path):
    trajs = [
        TrajectoryWithRew(obs=t.obs, acts=t.acts, infos=None, terminal=t.terminal, rews=t.rews)
        for t in data.to_trajectories(discrete_episodes())
    ]
    data.save(tmp_path / "ds", trajs)
    assert not data.has_costs(data.load(tmp_path / "ds"))


@pytest.mark.parametrize("what", ["missing", "empty-folder", "a-file"])
def test_load_of_a_non_dataset_names_the_fixing_command(tmp_path, what):
    path = tmp_path / "x"
    if what == "empty-folder":
        path.mkdir()
    elif what == "a-file":
        path.write_text("hello")
    with pytest.raises(ArtifactError, match="no demonstration dataset") as info:
        data.load(path)
    assert "safeknob collect-demos" in str(info.value)


@pytest.mark.parametrize("damage", ["truncate", "garbage", "delete-arrow", "bad-json"])
def test_corrupt_dataset_is_an_artifact_error(tmp_path, damage):
    path = tmp_path / "ds"
    data.save(path, data.to_trajectories(discrete_episodes()))
    (arrow,) = path.glob("*.arrow")
    if damage == "truncate":
        os.truncate(arrow, arrow.stat().st_size // 2)
    elif damage == "garbage":
        arrow.write_bytes(b"\0garbage" * 50)
    elif damage == "delete-arrow":
        arrow.unlink()
    else:
        (path / "dataset_info.json").write_text("{not json")
        (path / "state.json").write_text("{not json")
    with pytest.raises(ArtifactError, match="corrupt or truncated") as info:
        data.load(path)
    assert "--force" in str(info.value)


def test_check_compatible_accepts_matching_data():
    env = make_env(GRID, TINY)
    data.check_compatible(data.to_trajectories(discrete_episodes(10)), env, "ds", "fix")


@pytest.mark.parametrize(
    ("make", "needle"),
    [
        (lambda: discrete_episodes(n_states=40), "does not match the env's observation space"),
        (box_episodes, "does not match the env's observation space"),
    ],
    ids=["bigger-grid", "box-obs"],
)
def test_check_compatible_rejects_other_spaces(make, needle):
    env = make_env(GRID, TINY)
    with pytest.raises(ArtifactError) as info:
        data.check_compatible(data.to_trajectories(make()), env, "ds", "pick the experiment")
    assert needle in str(info.value)
    assert "Discrete(10)" in str(info.value) and "pick the experiment" in str(info.value)


def test_check_compatible_rejects_out_of_range_actions():
    eps = discrete_episodes(10)
    eps[0].acts[0] = 7
    with pytest.raises(ArtifactError, match="step 0: action 7 does not match"):
        data.check_compatible(data.to_trajectories(eps), make_env(GRID, TINY), "ds", "fix")


def test_check_compatible_rejects_missing_cost():
    trajs = data.to_trajectories(discrete_episodes(10))
    trajs[1] = TrajectoryWithRew(
        obs=trajs[1].obs,
        acts=trajs[1].acts,
        infos=np.array([{} for _ in trajs[1].acts], dtype=object),
        terminal=trajs[1].terminal,
        rews=trajs[1].rews,
    )
    with pytest.raises(ArtifactError, match="no per-step cost"):
        data.check_compatible(trajs, make_env(GRID, TINY), "ds", "fix")


def test_collected_demos_load_with_costs_matching_the_manifest(trained_root, tmp_path):
    """The demos the pipeline wrote load back; their costs sum to the manifest's mean."""
    from conftest import tiny_config

    from safeknob.config import RunConfig
    from safeknob.store import ExperimentStore

    root = tmp_path / "data"
    shutil.copytree(trained_root, root)
    rc = RunConfig(experiment=tiny_config(), data_dir=root, quiet=True)
    for role in ("safe", "reckless"):
        trajs, manifest = ExperimentStore(rc).demos(role)
        assert data.has_costs(trajs)
        assert len(trajs) == manifest["summary"]["episodes"]
        mean_cost = np.mean([data.costs(t).sum() for t in trajs])
        assert mean_cost == pytest.approx(manifest["summary"]["cost_mean"])
    (arrow,) = rc.paths.demos("safe").glob("*.arrow")
    os.truncate(arrow, arrow.stat().st_size // 3)
    with pytest.raises(ArtifactError, match="safeknob collect-demos --force"):
        ExperimentStore(rc).demos("safe")
