"""Offline safe-RL datasets in the DSRL/D4RL HDF5 layout as the experts' demonstrations
(`collect-demos --from hdf5:PATH`), and `demos export --format hdf5`."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
from typer.testing import CliRunner

from safeknob import data, hdf5_io
from safeknob.artifacts import ArtifactError
from safeknob.cli import app
from safeknob.envs import NAV_ID, make_env
from safeknob.errors import UserError
from safeknob.evaluation.rollout import rollout

runner = CliRunner()


def write_dsrl(path: Path, episodes: list[dict], **override) -> Path:
    """Write episodes (dicts of obs (T+1, ...), acts, rews, costs, terminal) in the DSRL
    layout with h5py directly (independent of safeknob's writer); ``override`` replaces or,
    given None, removes datasets."""
    cols: dict[str, list] = {k: [] for k in hdf5_io.KEYS}
    for ep in episodes:
        n = len(ep["acts"])
        cols["observations"].append(np.asarray(ep["obs"])[:-1])
        cols["next_observations"].append(np.asarray(ep["obs"])[1:])
        cols["actions"].append(np.asarray(ep["acts"]))
        cols["rewards"].append(np.asarray(ep["rews"], dtype=np.float32))
        cols["costs"].append(np.asarray(ep["costs"], dtype=np.float32))
        end = np.zeros(n, dtype=bool)
        end[-1] = True
        cols["terminals"].append(end if ep["terminal"] else np.zeros(n, dtype=bool))
        cols["timeouts"].append(np.zeros(n, dtype=bool) if ep["terminal"] else end)
    arrays = {k: np.concatenate(v) for k, v in cols.items()}
    for k, v in override.items():
        if v is None:
            arrays.pop(k)
        else:
            arrays[k] = v
    with h5py.File(path, "w") as f:
        for k, v in arrays.items():
            f.create_dataset(k, data=v)
    return path


def synthetic(n_eps: int, rng: np.random.Generator, obs_dim: int = 8) -> list[dict]:
    """Episodes of HazardNav's shapes (fence layout: 8-D observations, 2-D actions) with
    chosen returns and costs: episode k has return k and cost k % 4."""
    out = []
    for k in range(n_eps):
        n = int(rng.integers(3, 8))
        rews = np.full(n, k / n)
        costs = np.zeros(n)
        costs[: k % 4] = 1.0
        out.append(
            {
                "obs": rng.uniform(-0.5, 0.5, (n + 1, obs_dim)).astype(np.float32),
                "acts": rng.uniform(-1, 1, (n, 2)).astype(np.float32),
                "rews": rews,
                "costs": costs,
                "terminal": bool(k % 2),
            }
        )
    return out


def test_read_splits_episodes(tmp_path):
    eps = synthetic(6, np.random.default_rng(0))
    ds = hdf5_io.read(write_dsrl(tmp_path / "d.hdf5", eps))
    assert len(ds.bounds) == 6
    np.testing.assert_allclose(ds.returns, np.arange(6), atol=1e-5)
    np.testing.assert_allclose(ds.costs, [k % 4 for k in range(6)])
    for i, ep in enumerate(eps):
        t = ds.trajectory(i)
        np.testing.assert_array_equal(t.obs, ep["obs"])
        np.testing.assert_array_equal(t.acts, ep["acts"])
        assert t.terminal == ep["terminal"]
        np.testing.assert_allclose(data.costs(t), ep["costs"])
        assert all(type(info["cost"]) is float for info in t.infos)


def test_read_keeps_a_cut_episode_as_truncated(tmp_path):
    eps = synthetic(3, np.random.default_rng(1))
    path = write_dsrl(tmp_path / "d.hdf5", eps)
    with h5py.File(path, "r+") as f:  # the file ends mid-episode: drop the last flag
        t = f["timeouts"][()]
        r = f["terminals"][()]
        t[-1] = r[-1] = False
        f["timeouts"][...] = t
        f["terminals"][...] = r
    ds = hdf5_io.read(path)
    assert len(ds.bounds) == 3
    assert ds.bounds[-1][1] == len(t)
    assert not ds.trajectory(2).terminal


def test_select_rule():
    rets = np.array([5.0, 9.0, 7.0, 9.0, 1.0])
    costs = np.array([0.0, 30.0, 10.0, 20.0, 0.0])
    assert list(hdf5_io.select(rets, costs, "reckless", 3)) == [1, 3, 2]  # ties: file order
    assert list(hdf5_io.select(rets, costs, "safe", 2, max_cost=10.0)) == [2, 0]
    assert list(hdf5_io.select(rets, costs, "safe", 9, max_cost=25.0)) == [3, 2, 0, 4]
    with pytest.raises(UserError, match="no episode has cost <= 0.5 .*lowest episode cost is 3"):
        hdf5_io.select(rets, costs + 3, "safe", 2, max_cost=0.5)
    with pytest.raises(UserError):
        hdf5_io.select(rets, costs, "careful", 2)


def _import(path: Path, root: Path, role: str, *extra: str):
    return runner.invoke(
        app,
        [
            "collect-demos",
            "-e",
            "hazard-nav",
            "--data",
            str(root),
            "--from",
            f"hdf5:{path}",
            "--role",
            role,
            "--quiet",
            *extra,
        ],
    )


def test_collect_demos_from_hdf5_records_selection(tmp_path):
    path = write_dsrl(tmp_path / "mixed.hdf5", synthetic(20, np.random.default_rng(2)))
    root = tmp_path / "data"
    res = _import(path, root, "reckless", "--episodes", "5")
    assert res.exit_code == 0, res.output
    res = _import(path, root, "safe", "--episodes", "5", "--max-cost", "1")
    assert res.exit_code == 0, res.output
    demos = root / "hazard-nav" / "demos"
    reck = json.loads((demos / "reckless" / "manifest.json").read_text())
    safe = json.loads((demos / "safe" / "manifest.json").read_text())
    assert reck["selection"]["kept"]["index"] == [19, 18, 17, 16, 15]
    assert len(reck["selection"]["dropped"]["index"]) == 15
    # Safe: cost k % 4 <= 1, i.e. k = 17, 16, 13, 12, 9 by return.
    assert safe["selection"]["kept"]["index"] == [17, 16, 13, 12, 9]
    assert safe["selection"]["max_cost"] == 1.0
    assert max(safe["selection"]["kept"]["cost"]) <= 1.0
    assert "cost <= 1" in safe["selection"]["rule"]
    assert safe["summary"]["episodes"] == 5
    np.testing.assert_allclose(
        [float(np.sum(t.rews)) for t in data.load(demos / "safe")], [17, 16, 13, 12, 9], atol=1e-4
    )
    # The budget defaults to the experiment's cost limit (hazard-nav: 0.5): only cost 0.
    res = _import(path, root, "safe", "--episodes", "5", "--force")
    assert res.exit_code == 0, res.output
    safe = json.loads((demos / "safe" / "manifest.json").read_text())
    assert safe["selection"]["max_cost"] == 0.5
    assert safe["selection"]["kept"]["index"] == [16, 12, 8, 4, 0]


@pytest.mark.parametrize(
    "case, message",
    [
        ("missing", "no 'costs' dataset"),
        ("lengths", "rows but 'observations' has"),
        ("budget", "no episode has cost <= 0.5"),
        ("not-hdf5", "not a readable HDF5 file"),
        ("absent", "no HDF5 file at"),
        ("shape", "does not match the env's observation space"),
    ],
)
def test_bad_files_one_line(tmp_path, case, message):
    rng = np.random.default_rng(3)
    path = tmp_path / "bad.hdf5"
    if case == "missing":
        write_dsrl(path, synthetic(4, rng), costs=None)
    elif case == "lengths":  # one reward short
        eps = synthetic(4, rng)
        n = sum(len(e["acts"]) for e in eps)
        write_dsrl(path, eps, rewards=np.zeros(n - 1, dtype=np.float32))
    elif case == "budget":
        eps = [{**e, "costs": np.ones(len(e["acts"]))} for e in synthetic(4, rng)]
        write_dsrl(path, eps)
    elif case == "not-hdf5":
        path.write_text("observations,actions\n1,2\n")
    elif case == "shape":
        write_dsrl(path, synthetic(4, rng, obs_dim=5))
    res = _import(path, tmp_path / "data", "safe")
    assert res.exit_code == 2, res.output
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in res.output, res.output
    assert message in " ".join(res.output.split()), res.output
    assert not (tmp_path / "data" / "hazard-nav" / "demos" / "safe").exists()


def test_max_cost_needs_an_hdf5_source(tmp_path):
    res = runner.invoke(
        app, ["collect-demos", "-e", "hazard-nav", "--data", str(tmp_path), "--max-cost", "1"]
    )
    assert res.exit_code == 2 and "--max-cost applies to --from hdf5" in res.output, res.output


def test_library_errors(tmp_path):
    path = write_dsrl(tmp_path / "d.hdf5", synthetic(3, np.random.default_rng(4)))
    with pytest.raises(UserError, match="no episode has cost"):
        hdf5_io.load_selected(path, "safe", 2, max_cost=-1.0)
    with pytest.raises(ArtifactError, match="no HDF5 file"):
        hdf5_io.read(tmp_path / "nope.hdf5")


def test_export_round_trip(tmp_path):
    """collect-demos --from hdf5 -> demos export --format hdf5 -> the same arrays back, and
    the export imports again unchanged."""
    eps = synthetic(12, np.random.default_rng(5))
    src = write_dsrl(tmp_path / "in.hdf5", eps)
    root = tmp_path / "data"
    assert _import(src, root, "reckless", "--episodes", "12").exit_code == 0
    folder = root / "hazard-nav" / "demos" / "reckless"
    out = tmp_path / "out" / "reckless.hdf5"
    res = runner.invoke(
        app, ["demos", "export", str(folder), "--format", "hdf5", "--out", str(out)]
    )
    assert res.exit_code == 0, res.output
    before = data.load(folder)
    ds = hdf5_io.read(out)
    assert len(ds.bounds) == len(before) == 12
    for i, t in enumerate(before):
        u = ds.trajectory(i)
        np.testing.assert_allclose(u.obs, t.obs, rtol=1e-6)
        np.testing.assert_allclose(u.acts, t.acts, rtol=1e-6)
        np.testing.assert_allclose(u.rews, t.rews)
        np.testing.assert_allclose(data.costs(u), data.costs(t))
        assert u.terminal == t.terminal
    with h5py.File(out, "r") as f:
        assert set(hdf5_io.KEYS) <= set(f.keys())
        assert f.attrs["env_id"] == NAV_ID
        assert f.attrs["role"] == "reckless"
    # Refuses to overwrite without --force; one line.
    res = runner.invoke(
        app, ["demos", "export", str(folder), "--format", "hdf5", "--out", str(out)]
    )
    assert res.exit_code == 2 and "--force" in res.output
    # Imports again: same episodes selected, same arrays.
    assert _import(out, tmp_path / "data2", "reckless", "--episodes", "12").exit_code == 0
    again = data.load(tmp_path / "data2" / "hazard-nav" / "demos" / "reckless")
    # Selection re-sorts by return; the file holds the first selection's order already.
    for t, u in zip(before, again, strict=True):
        np.testing.assert_allclose(u.obs, t.obs, rtol=1e-6)
        np.testing.assert_allclose(data.costs(u), data.costs(t))


class RouteAgent:
    """A scripted HazardNav (fence layout) driver making a mixed dataset: per episode,
    straight at the goal (through the fence and the pond: costly, quick), round the fence's
    end and above the pond (cost-free, longer), or random actions."""

    ROUTES = {
        "straight": [(0.8, 0.0)],
        "detour": [(-0.6, 0.68), (0.1, 0.62), (0.8, 0.0)],
    }

    def __init__(self) -> None:
        self.plan: dict[int, list | None] = {}
        self.rngs: dict[int, np.random.Generator] = {}

    def start_episode(self, slot: int, rng: np.random.Generator) -> None:
        kind = ("straight", "detour", "random")[int(rng.integers(3))]
        self.plan[slot] = None if kind == "random" else list(self.ROUTES[kind])
        self.rngs[slot] = rng

    def act(self, obs: np.ndarray, slots: np.ndarray) -> np.ndarray:
        out = np.zeros((len(slots), 2), dtype=np.float32)
        for j, s in enumerate(slots):
            plan, rng = self.plan[int(s)], self.rngs[int(s)]
            if plan is None:
                out[j] = rng.uniform(-1, 1, 2)
                continue
            pos = obs[j, :2]
            if len(plan) > 1 and np.linalg.norm(np.asarray(plan[0]) - pos) < 0.08:
                plan.pop(0)
            d = np.asarray(plan[0]) - pos
            out[j] = d / max(np.linalg.norm(d), 1e-6) + rng.normal(0, 0.1, 2)
        return np.clip(out, -1, 1)


def test_mixed_dataset_to_bc_mix_blend(tmp_path):
    """The target: a DSRL-layout file of 200 mixed HazardNav episodes -> collect-demos for
    both roles -> blend --alpha 0.5 -m bc-mix, with no expert ever trained."""
    from safeknob.config import load_experiment
    from safeknob.rl.training import env_factory

    exp = load_experiment("hazard-nav")
    res = rollout(RouteAgent(), env_factory(exp.env), 200, seed=0, record=True)
    eps = [
        {"obs": e.obs, "acts": e.acts, "rews": e.rews, "costs": e.costs, "terminal": e.terminal}
        for e in res.episodes
    ]
    assert len(eps) == 200
    assert (res.costs <= exp.experts.cost_limit).sum() >= 40  # the mixture has safe episodes
    assert (res.costs > 2).sum() >= 40  # ... and costly ones
    path = write_dsrl(tmp_path / "hazard-nav-mixed.hdf5", eps)
    root = tmp_path / "data"
    for role in ("reckless", "safe"):
        r = _import(path, root, role, "--episodes", "40")
        assert r.exit_code == 0, r.output
    demos = root / "hazard-nav" / "demos"
    reck = json.loads((demos / "reckless" / "manifest.json").read_text())["summary"]
    safe = json.loads((demos / "safe" / "manifest.json").read_text())["summary"]
    assert safe["cost_mean"] <= exp.experts.cost_limit < reck["cost_mean"]
    assert reck["return_mean"] > safe["return_mean"]
    r = runner.invoke(
        app,
        [
            "blend",
            "-e",
            "hazard-nav",
            "--data",
            str(root),
            "--alpha",
            "0.5",
            "-m",
            "bc-mix",
            "--episodes",
            "20",
        ],
    )
    assert r.exit_code == 0, r.output
    assert "demos-safe" in r.output and "demos-reckless" in r.output
    meta = json.loads(
        (root / "hazard-nav" / "blends" / "bc-mix" / "alpha-0.50" / "meta.json").read_text()
    )
    assert meta["transitions_reckless"] > 0 and meta["transitions_safe"] > 0


def test_navenv_is_what_the_file_claims():
    """The synthetic files use HazardNav's (fence layout) shapes."""
    env = make_env(NAV_ID, {"layout": "fence"})
    assert env.observation_space.shape == (8,) and env.action_space.shape == (2,)
    env.close()
