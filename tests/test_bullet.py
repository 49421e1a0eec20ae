"""Bullet-Safety-Gym (optional, `make install-bullet`): skipped cleanly when not installed.

The checks run in a subprocess: pybullet resolves symbols against the process's stdout,
which pytest's output capture replaces (it fails with "undefined symbol: _io.FileIO")."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import pytest

if (
    importlib.util.find_spec("bullet_safety_gym") is None
    or importlib.util.find_spec("pybullet") is None
):
    pytest.skip("bullet-safety-gym not installed (make install-bullet)", allow_module_level=True)

CODE = """
import numpy as np
from safeknob.config import load_experiment
from safeknob.envs import make_env
exp = load_experiment("ball-circle")
env = make_env(exp.env.id, dict(exp.env.kwargs), exp.env.cost_fn)
costs = []
for seed in (0, 0, 1):
    env.reset(seed=seed)
    env.action_space.seed(seed)
    total = 0.0
    for _ in range(60):
        _, r, term, trunc, info = env.step(env.action_space.sample())
        assert isinstance(info["cost"], float) and info["cost"] >= 0
        total += r
        if term or trunc:
            break
    costs.append(total)
# Note: SafetyBallCircle-v0 1.4.0 is not reproducible under reset(seed=...) (measured:
# two runs with seed 0 gave different returns), so no determinism is asserted here.
print("OK", costs)
"""


def test_ball_circle_reports_cost_on_gymnasium_029():
    res = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "OK" in res.stdout
