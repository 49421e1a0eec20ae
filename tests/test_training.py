"""The foreach Adam that every policy trains with gives the weights torch's default would."""

from __future__ import annotations

import numpy as np
import torch
from conftest import tiny_config
from imitation.data.types import TrajectoryWithRew

from safeknob.config import PPOConfig
from safeknob.rl import warmstart
from safeknob.rl.training import ADAM_KWARGS, build_ppo, make_vec_env


def _trained(loop_adam: bool) -> tuple[dict, dict, dict]:
    """(initial weights, trained weights, Adam's settings) of one seeded PPO run."""
    exp = tiny_config()
    model = build_ppo(make_vec_env(exp.env, exp.ppo.n_envs), exp.ppo, seed=3)
    if loop_adam:  # what SB3 builds when given no optimizer_kwargs
        model.policy.optimizer = torch.optim.Adam(
            model.policy.parameters(), lr=exp.ppo.learning_rate, eps=1e-5
        )
    start = {k: v.clone() for k, v in model.policy.state_dict().items()}
    model.learn(2 * exp.ppo.n_envs * exp.ppo.n_steps)
    return start, model.policy.state_dict(), model.policy.optimizer.param_groups[0]


def test_ppo_with_foreach_adam_trains_the_same_weights_as_sb3s_default():
    start, a, group = _trained(loop_adam=False)
    _, b, _ = _trained(loop_adam=True)
    assert group["foreach"] is True and group["eps"] == 1e-5
    assert not all(torch.equal(a[k], start[k]) for k in a)  # it trained
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_bc_with_foreach_adam_clones_the_same_weights(monkeypatch):
    exp = tiny_config()

    def cloned() -> dict[str, torch.Tensor]:
        model = build_ppo(make_vec_env(exp.env, 1), PPOConfig(n_envs=1), seed=5)
        obs_space, act_space = model.observation_space, model.action_space
        rng = np.random.default_rng(0)
        trajs = [
            TrajectoryWithRew(
                obs=rng.integers(0, obs_space.n, size=11),
                acts=rng.integers(0, act_space.n, size=10),
                infos=None,
                terminal=True,
                rews=np.zeros(10, dtype=np.float32),
            )  # fmt: skip
            for _ in range(8)
        ]
        start = {k: v.clone() for k, v in model.policy.state_dict().items()}
        warmstart.bc_warmstart(model, trajs, obs_space, act_space, 5, 3)
        after = model.policy.state_dict()
        assert not all(torch.equal(after[k], start[k]) for k in after)  # it cloned
        return after

    a = cloned()
    monkeypatch.setattr(warmstart, "ADAM_KWARGS", {})
    b = cloned()
    assert ADAM_KWARGS == {"foreach": True}
    assert all(torch.equal(a[k], b[k]) for k in a)
