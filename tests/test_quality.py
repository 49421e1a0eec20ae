"""Slow quality checks on the default experiment (`make test-all`): the experts meet the
foundation issue's bar against the exact optimum and frontier."""

from __future__ import annotations

import json

import pytest

from safeknob.config import RunConfig, load_experiment
from safeknob.envs import make_env, tabular_model
from safeknob.envs.frontier import Frontier
from safeknob.stages import train_experts


@pytest.mark.slow
def test_default_grid_experts_meet_the_bar(tmp_path):
    rc = RunConfig(load_experiment("hazard-grid"), tmp_path, quiet=True, tensorboard=False)
    train_experts.run(rc)
    exp = rc.experiment
    model = tabular_model(make_env(exp.env.id, dict(exp.env.kwargs)))
    fr = Frontier.compute(model)
    reck = json.loads((rc.paths.expert("reckless") / "meta.json").read_text())["evaluation"]
    safe = json.loads((rc.paths.expert("safe") / "meta.json").read_text())["evaluation"]
    limit = exp.experts.cost_limit
    assert fr.optimum - reck["return_mean"] <= 0.02
    assert safe["cost_mean"] <= 1.1 * limit
    assert fr(limit) - safe["return_mean"] <= 0.03
