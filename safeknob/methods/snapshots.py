"""Deploying the average of a Lagrangian method's last policy iterates.

A single final PPO-Lagrangian snapshot oscillates around the budget; the average of the
last iterates is what meets it (STACK.md). We deploy that average as an episode-level
mixture of the saved snapshots: each episode runs one snapshot drawn uniformly.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from safeknob.rollout import Agent, MixtureAgent, PolicyAgent

SNAPSHOT_FILE = "snapshots.pt"


def save_snapshots(folder: Path, snapshots: list[dict[str, torch.Tensor]], keep: int = 20) -> int:
    """Save at most ``keep`` evenly spaced snapshots (policy state dicts); returns how many."""
    if not snapshots:
        return 0
    idx = np.unique(
        np.linspace(0, len(snapshots) - 1, min(keep, len(snapshots))).round().astype(int)
    )
    torch.save([snapshots[i] for i in idx], folder / SNAPSHOT_FILE)
    return int(len(idx))


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
        policy = model.policy.__class__(**model.policy._get_constructor_parameters())
        policy.load_state_dict(sd)
        policy.set_training_mode(False)
        agents.append(PolicyAgent(_PolicyModel(policy, obs_transform), deterministic))
    return MixtureAgent(agents, [1.0] * len(agents))
