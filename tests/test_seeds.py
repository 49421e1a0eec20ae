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


def _run(root, exp) -> tuple[pd.DataFrame, pd.DataFrame]:
    rc = RunConfig(experiment=exp, data_dir=root, quiet=True, tensorboard=False)
    pipeline.run(pipeline.PipelineConfig(rc, workers=1))
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
    (res_a, sum_a), (res_b, sum_b) = (_run(r, exp) for r in roots)

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

    # Same seed list, same numbers (apart from wall-clock columns).
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
