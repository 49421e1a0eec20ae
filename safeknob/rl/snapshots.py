"""Deploying a Lagrangian method's policy iterates as an episode-level mixture.

A single final PPO-Lagrangian snapshot oscillates around the budget; a mixture of iterates
is what meets it (STACK.md). Two ways to deploy one:

* the uniform average of the last iterates (each episode runs one snapshot drawn
  uniformly), used by ``conditioned``;
* the *dual mixture* (``budget``): the solution of a constrained problem is a mixture of at
  most two deterministic-enough policies that bracket the budget. Each snapshot's objective
  (the reward it maximizes, never the true one under ``--reward airl``) and cost are
  measured from the episodes it generated during training; the pair (one at or below the
  budget, one at or above) whose interpolation at the budget has the best objective is
  deployed with the weights that make its expected cost equal the budget.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from safeknob.evaluation.rollout import Agent, MixtureAgent, PolicyAgent

SNAPSHOT_FILE = "snapshots.pt"
WEIGHTS_FILE = "snapshot_weights.json"


def dual_mixture(
    points: list[tuple[float, float, int]],
    budget: float,
    min_episodes: int = 5,
    lam: float | None = None,
) -> list[tuple[int, float]]:
    """Indices and weights (summing to 1) of the best mixture of at most two snapshots whose
    expected cost equals ``budget``.

    Args:
        points: per snapshot (mean episode objective, mean episode cost, episodes measured).
        budget: the episode-cost budget d.
        min_episodes: snapshots measured on fewer episodes are ignored.
        lam: the training's final multiplier. When every snapshot overspends, the one with
            the best Lagrangian ``objective - lam * cost`` is deployed; without ``lam``, the
            cheapest (ties: the best objective).
    """
    valid = [
        (i, o, c)
        for i, (o, c, n) in enumerate(points)
        if n >= min_episodes and np.isfinite(o) and np.isfinite(c)
    ]
    if not valid:
        return [(len(points) - 1, 1.0)]
    below = [v for v in valid if v[2] <= budget]
    above = [v for v in valid if v[2] >= budget]
    if not below:  # every snapshot overspends: the best trade-off at the final multiplier
        if lam is not None:
            i = max(above, key=lambda v: (v[1] - lam * v[2], -v[2]))[0]
        else:
            i = min(above, key=lambda v: (v[2], -v[1]))[0]
        return [(i, 1.0)]
    if not above:  # every snapshot underspends: the best one
        i = max(below, key=lambda v: (v[1], -v[2]))[0]
        return [(i, 1.0)]
    best: tuple[float, list[tuple[int, float]]] | None = None
    for i, oi, ci in below:
        for j, oj, cj in above:
            if cj - ci < 1e-12:
                cand = (max(oi, oj), [(i if oi >= oj else j, 1.0)])
            else:
                w = (budget - ci) / (cj - ci)
                cand = ((1 - w) * oi + w * oj, [(i, 1.0 - w), (j, w)])
            if best is None or cand[0] > best[0]:
                best = cand
    assert best is not None
    return [(i, w) for i, w in best[1] if w > 0]


def save_weighted(
    folder: Path, snapshots: list[dict[str, torch.Tensor]], weights: list[tuple[int, float]]
) -> None:
    """Save the chosen snapshots and their mixture weights."""
    torch.save([snapshots[i] for i, _ in weights], folder / SNAPSHOT_FILE)
    (folder / WEIGHTS_FILE).write_text(json.dumps([w for _, w in weights]))


def save_snapshots(folder: Path, snapshots: list[dict[str, torch.Tensor]], keep: int = 20) -> int:
    """Save at most ``keep`` evenly spaced snapshots (policy state dicts); returns how many."""
    if not snapshots:
        return 0
    idx = np.unique(
        np.linspace(0, len(snapshots) - 1, min(keep, len(snapshots))).round().astype(int)
    )
    torch.save([snapshots[i] for i in idx], folder / SNAPSHOT_FILE)
    return int(len(idx))


def policy_from_state(model: Any, state: dict[str, torch.Tensor]) -> Any:
    """A copy of ``model``'s policy network holding the weights ``state``, in eval mode."""
    policy = model.policy.__class__(**model.policy._get_constructor_parameters())
    policy.load_state_dict(state)
    policy.set_training_mode(False)
    return policy


class _PolicyModel:
    """``predict`` over one policy network (shares the loaded model's architecture)."""

    def __init__(self, policy: Any, obs_transform: Any = None) -> None:
        self.policy = policy
        self.obs_transform = obs_transform

    def predict(self, obs: np.ndarray, deterministic: bool = False):
        if self.obs_transform is not None:
            obs = self.obs_transform(obs)
        return self.policy.predict(obs, deterministic=deterministic)


def snapshot_agent(
    folder: Path, model: Any, deterministic: bool = False, obs_transform: Any = None
) -> Agent:
    """An episode-level uniform mixture of the snapshots in ``folder`` (or the final model if
    none were saved)."""
    path = folder / SNAPSHOT_FILE
    if not path.is_file():
        return PolicyAgent(_PolicyModel(model.policy, obs_transform), deterministic)
    states = torch.load(path, map_location="cpu", weights_only=True)
    agents: list[Agent] = []
    for sd in states:
        policy = policy_from_state(model, sd)
        agents.append(PolicyAgent(_PolicyModel(policy, obs_transform), deterministic))
    wpath = folder / WEIGHTS_FILE
    weights = json.loads(wpath.read_text()) if wpath.is_file() else [1.0] * len(agents)
    return MixtureAgent(agents, weights)
