"""Demonstrations to a local Minari dataset and back, per-step cost kept."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from safeknob import data
from safeknob.artifacts import ArtifactError
from safeknob.errors import UserError

minari = pytest.importorskip("minari")

from safeknob import minari_io  # noqa: E402


def _same(a, b) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x.obs, y.obs)
        np.testing.assert_array_equal(x.acts, y.acts)
        np.testing.assert_allclose(x.rews, y.rews)
        np.testing.assert_allclose(data.costs(x), data.costs(y))
        assert x.terminal == y.terminal


@pytest.mark.parametrize("role", ["safe", "reckless"])
def test_round_trip_grid(trained_root, tmp_path, monkeypatch, role):
    src = trained_root / "tiny-grid" / "demos" / role
    out = minari_io.export(src, f"safeknob/tiny-grid-{role}-v0", tmp_path / "minari")
    assert out == tmp_path / "minari" / "safeknob" / f"tiny-grid-{role}-v0"
    before = data.load(src)
    assert data.has_costs(before)

    # By folder ...
    after = minari_io.load(out)
    _same(before, after)
    assert data.has_costs(after)
    # ... and by id in Minari's local database, with Minari's own reader agreeing.
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    _same(before, minari_io.load(f"safeknob/tiny-grid-{role}-v0"))
    ds = minari.load_dataset(f"safeknob/tiny-grid-{role}-v0")
    assert ds.total_episodes == len(before)
    ep = next(iter(ds.iterate_episodes()))
    assert len(ep.infos["cost"]) == len(ep.actions) + 1  # Minari's convention: reset first
    assert ds.spec.env_spec.id == "safeknob/HazardGrid-v0"
    # The imported dataset passes the checks `collect-demos --from` applies.
    from safeknob.envs import make_env

    env = make_env("safeknob/HazardGrid-v0", json.loads(json.dumps(ds.spec.env_spec.kwargs)))
    data.check_compatible(after, env, "minari", "fix")
    env.close()


def test_round_trip_box_spaces(tmp_path):
    """Continuous observations (HazardNav) survive too."""
    from safeknob.envs import NAV_ID, make_env
    from safeknob.evaluation.rollout import Episode

    env = make_env(NAV_ID)
    env.action_space.seed(0)
    episodes = []
    for k in range(3):
        obs, _ = env.reset(seed=k)
        o, a, r, c = [obs], [], [], []
        for _ in range(15):
            act = env.action_space.sample()
            obs, rew, term, trunc, info = env.step(act)
            o.append(obs)
            a.append(act)
            r.append(rew)
            c.append(info["cost"])
            if term or trunc:
                break
        episodes.append(Episode(np.array(o), np.array(a), np.array(r), np.array(c), bool(term)))
    env.close()
    src = tmp_path / "demos"
    data.save(src, data.to_trajectories(episodes))
    manifest = {"role": "safe", "config": {"env": {"id": NAV_ID, "kwargs": {}}}}
    (src / "manifest.json").write_text(json.dumps(manifest))
    out = minari_io.export(src, "nav-v1", tmp_path / "minari")
    after = minari_io.load(out)
    _same(data.load(src), after)
    assert after[0].obs.dtype == np.float32 and after[0].acts.shape[1:] == (2,)
    # Actions stored as float64 (e.g. recorded elsewhere) are cast to the space's float32.
    trajs = data.load(src)
    wide = [dataclasses.replace(t, acts=t.acts.astype(np.float64)) for t in trajs]
    src64 = tmp_path / "demos64"
    data.save(src64, wide)
    (src64 / "manifest.json").write_text(json.dumps(manifest))
    _same(trajs, minari_io.load(minari_io.export(src64, "nav64-v0", tmp_path / "minari")))


def test_bad_input(trained_root, tmp_path, monkeypatch):
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "db"))
    src = trained_root / "tiny-grid" / "demos" / "safe"
    with pytest.raises(UserError, match="malformed Minari dataset id"):
        minari_io.export(src, "no version", tmp_path)
    minari_io.export(src, "a-v0", tmp_path)
    with pytest.raises(ArtifactError, match="already exists"):
        minari_io.export(src, "a-v0", tmp_path)
    minari_io.export(src, "a-v0", tmp_path, force=True)  # replaced
    _same(data.load(src), minari_io.load(tmp_path / "a-v0"))
    with pytest.raises(ArtifactError, match="no local Minari dataset"):
        minari_io.load("nothing/here-v0")
    with pytest.raises(ArtifactError, match="not a Minari dataset"):
        minari_io.load(tmp_path)
    assert not list(tmp_path.glob(".tmp-minari-*"))  # nothing half-written left
