"""Behavioural-cloning warm starts: a fresh policy starts at the experts (imitation's BC)."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np
from imitation.algorithms import bc
from imitation.data import rollout as imit_rollout
from imitation.data.types import TrajectoryWithRew
from imitation.util import logger as imit_logger

from safeknob.rl.training import ADAM_KWARGS


def bc_warmstart(
    gen: Any, trajs: list[TrajectoryWithRew], obs_space, act_space, seed: int, epochs: int = 20
) -> None:
    """Behavioural cloning (imitation's BC) of ``trajs`` into ``gen``'s policy, in place.

    ``gen`` is an SB3 model (PPO); ``obs_space``/``act_space`` are the spaces its policy
    sees (Discrete observations are cast to int64)."""
    trans = imit_rollout.flatten_trajectories(
        [
            TrajectoryWithRew(
                obs=np.asarray(t.obs).astype(np.int64)
                if isinstance(obs_space, gym.spaces.Discrete)
                else np.asarray(t.obs),
                acts=t.acts.astype(np.int64)
                if isinstance(act_space, gym.spaces.Discrete)
                else t.acts,
                infos=None,
                terminal=t.terminal,
                rews=t.rews,
            )  # fmt: skip
            for t in trajs
        ]
    )
    with tempfile.TemporaryDirectory() as logdir:
        trainer = bc.BC(
            observation_space=obs_space,
            action_space=act_space,
            rng=np.random.default_rng(seed),
            policy=gen.policy,
            demonstrations=trans,
            batch_size=min(64, len(trans)),  # tiny datasets: one full batch
            optimizer_kwargs=dict(ADAM_KWARGS),
            device="cpu",
            custom_logger=imit_logger.configure(logdir, format_strs=[]),
        )
        trainer.train(n_epochs=epochs, progress_bar=False)


def demos_warmstart(
    trajs: Callable[[], list[TrajectoryWithRew]], seed: int, epochs: int = 5
) -> Callable[[Any], None]:
    """A ``train_ppo(warmstart=...)`` hook: BC of the demonstrations ``trajs()`` returns
    (both experts') into the fresh PPO policy. From scratch, PPO on a learned reward stayed
    on one route whatever the multiplier (``budget --reward airl``) or never found the goal
    (``reward-mix``)."""

    def warmstart(model: Any) -> None:
        demos = trajs()
        env = model.get_env()
        bc_warmstart(model, demos, env.observation_space, env.action_space, seed, epochs)

    return warmstart
