"""Training seeds in the pipeline: every (method, alpha, seed) is trained, one results.csv row
each, across-seed intervals in summary.csv, and the same seed list gives the same numbers."""

from __future__ import annotations

import json
import shutil

import pandas as pd
from conftest import tiny_config

from safeknob.stages import pipeline
from safeknob.stages.common import RunConfig

WALL_CLOCK = ["train_seconds"]


def _run(root, exp, workers: int = 1) -> tuple[pd.DataFrame, pd.DataFrame]:
    rc = RunConfig(experiment=exp, data_dir=root, quiet=True, tensorboard=False)
    pipeline.run(pipeline.PipelineConfig(rc, workers=workers))
    ev = root / exp.name / "eval"
    return pd.read_csv(ev / "results.csv"), pd.read_csv(ev / "summary.csv")


def test_seeds_train_every_agent_and_rerun_gives_identical_numbers(trained_root, tmp_path):
    exp = tiny_config(
        blend={
            "seeds": [0, 1],
            "alphas": [0.0, 1.0],
            "methods": ["mixture", "budget-env", "conditioned"],
            "candidate_episodes": 20,
        }
    )
    roots = [tmp_path / "a", tmp_path / "b"]
    for r in roots:
        shutil.copytree(trained_root, r)
    # b trains every method's (alpha, seed) jobs on one 2-process pool (blend.run_all)
    (res_a, sum_a), (res_b, sum_b) = (_run(r, exp, w) for r, w in zip(roots, (1, 2), strict=True))

    blends = res_a[~res_a.method.str.startswith("expert-")]
    for method in ("mixture", "budget-env", "conditioned"):
        got = blends[blends.method == method][["alpha", "seed"]].values.tolist()
        assert sorted(map(tuple, got)) == [(0.0, 0), (0.0, 1), (1.0, 0), (1.0, 1)], method
    assert set(sum_a.n_seeds) == {2}
    for col in ("calibration_error", "spearman", "chord_gain_mean"):
        assert (sum_a[f"{col}_lo"] <= sum_a[col] + 1e-12).all()
        assert (sum_a[col] <= sum_a[f"{col}_hi"] + 1e-12).all()

    blend_dir = roots[0] / exp.name / "blends"
    assert (blend_dir / "budget-env" / "alpha-0.00_seed-1" / "meta.json").is_file()
    assert (blend_dir / "conditioned" / "shared_seed-1" / "model.zip").is_file()
    # Different training seeds got different torch seeds (derived streams).
    metas = [
        json.loads((blend_dir / "budget-env" / f / "meta.json").read_text())
        for f in ("alpha-0.00", "alpha-0.00_seed-1")
    ]
    assert metas[0]["seed"] == 0 and metas[1]["seed"] == 1
    assert metas[0]["candidates"] != metas[1]["candidates"]

    # Same seed list, same numbers (apart from wall-clock columns), serial or on the pool.
    pd.testing.assert_frame_equal(res_a.drop(columns=WALL_CLOCK), res_b.drop(columns=WALL_CLOCK))
    pd.testing.assert_frame_equal(sum_a.drop(columns=WALL_CLOCK), sum_b.drop(columns=WALL_CLOCK))


def test_adding_a_seed_keeps_the_trained_agents(pipeline_root):
    """The seed list is not part of an agent's config: adding a seed trains only the new one."""
    base = tiny_config(blend={"alphas": [0.5], "methods": ["budget-env"], "candidate_episodes": 10})
    _run(pipeline_root, base)
    folder = pipeline_root / base.name / "blends" / "budget-env" / "alpha-0.50"
    before = (folder / "meta.json").read_text()
    more = tiny_config(
        blend={
            "alphas": [0.5],
            "methods": ["budget-env"],
            "candidate_episodes": 10,
            "seeds": [0, 2],
        }
    )
    res, summary = _run(pipeline_root, more)
    assert (folder / "meta.json").read_text() == before
    assert sorted(res[res.method == "budget-env"].seed) == [0, 2]
    assert int(summary.loc[summary.method == "budget-env", "n_seeds"].iloc[0]) == 2


def test_one_pool_for_every_method_longest_jobs_first(run_config, monkeypatch):
    """``blend.run_all`` sends every method's (alpha, seed) jobs to one pool, the conditioned
    policy's seeds (one long job each) first, and leaves out agents already trained."""
    import dataclasses

    from safeknob.stages import blend

    exp = run_config.experiment
    rc = run_config.replace(
        experiment=exp.replace(blend=dataclasses.replace(exp.blend, seeds=(0, 1)))
    )
    sent: list[list[tuple[str, tuple[float, ...], int]]] = []

    def fake_parallel(jobs, workers, quiet):
        sent.append([(j.method, j.alphas, j.seed) for j in jobs])
        for j in jobs:
            blend._train(blend._plan(j))

    monkeypatch.setattr(blend, "_run_parallel", fake_parallel)
    bcs = [
        blend.BlendRunConfig(rc, "bc-mix", (0.0, 1.0)),
        blend.BlendRunConfig(rc, "mixture", (0.0, 1.0)),
        blend.BlendRunConfig(rc, "conditioned", (0.0, 1.0), "env"),
    ]
    (blend_root,) = {p.parent for p in blend.run_all(bcs, workers=2)}
    assert sent == [
        [
            ("conditioned", (0.0, 1.0), 0),
            ("conditioned", (0.0, 1.0), 1),
            ("bc-mix", (0.0,), 0),
            ("bc-mix", (1.0,), 0),
            ("bc-mix", (0.0,), 1),
            ("bc-mix", (1.0,), 1),
        ]
    ]  # mixture trains nothing: its folders are written in this process
    assert (blend_root / "mixture" / "alpha-1.00_seed-1" / "meta.json").is_file()
    (blend_root / "bc-mix" / "alpha-1.00_seed-1" / "meta.json").unlink()
    blend.run_all(bcs, workers=2)  # one missing agent: trained here, no pool
    assert len(sent) == 1
    assert (blend_root / "bc-mix" / "alpha-1.00_seed-1" / "meta.json").is_file()


def test_experts_on_two_processes_are_the_serial_experts(tmp_path):
    """``train-experts --workers 2`` trains the two roles at once, with the same numbers."""
    import torch

    from safeknob.stages import train_experts
    from safeknob.store import ExperimentStore

    metas = []
    for workers in (1, 2):
        rc = RunConfig(experiment=tiny_config(), data_dir=tmp_path / str(workers), quiet=True)
        train_experts.run(rc, workers)
        store = ExperimentStore(rc)
        metas.append({role: store.expert(role) for role in ("reckless", "safe")})
    for role in ("reckless", "safe"):
        (m1, meta1), (m2, meta2) = metas[0][role], metas[1][role]
        assert meta1["evaluation"] == meta2["evaluation"]
        for (k, v1), v2 in zip(
            m1.policy.state_dict().items(), m2.policy.state_dict().values(), strict=True
        ):
            assert torch.equal(v1, v2), k


def test_an_agent_made_with_another_config_stops_before_any_training(run_config):
    """Checks first: seed 1's agent made with another config is one error naming the command
    that remakes it, raised before seed 0 trains anything."""
    import dataclasses

    import pytest

    from safeknob.errors import ArtifactError
    from safeknob.stages import blend

    exp = run_config.experiment
    rc = run_config.replace(
        experiment=exp.replace(blend=dataclasses.replace(exp.blend, seeds=(0, 1)))
    )
    stale = rc.paths.blends / "bc-mix" / "alpha-1.00_seed-1"
    stale.mkdir(parents=True)
    (stale / "meta.json").write_text(json.dumps({"config": {"other": 1}}))
    with pytest.raises(ArtifactError) as err:
        blend.run_all([blend.BlendRunConfig(rc, "bc-mix", (0.0, 1.0))], workers=1)
    msg = str(err.value)
    assert "safeknob train-blend --method bc-mix --alphas 1 --seed 1 --force" in msg
    assert not (rc.paths.blends / "bc-mix" / "alpha-0.00").exists()


def test_experts_made_with_another_config_stop_training_before_it_starts(run_config):
    """Agents trained under a [lagrange] the experts were not made with would be refused by
    `evaluate`; `train-blend` refuses first, with the command that remakes the experts."""
    import dataclasses

    import pytest

    from safeknob.errors import ArtifactError
    from safeknob.stages import blend

    exp = run_config.experiment
    rc = run_config.replace(
        experiment=exp.replace(lagrange=dataclasses.replace(exp.lagrange, lambda_max=3.0))
    )
    with pytest.raises(ArtifactError, match=r"different \[lagrange\].*train-experts --force"):
        blend.run_all([blend.BlendRunConfig(rc, "bc-mix", (0.0, 1.0))], workers=1)
    assert not (rc.paths.blends / "bc-mix").exists()
