"""Training helpers shared by the experts and the blend methods (stable-baselines3 PPO)."""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from rich.progress import Progress, TaskID
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import BaseCallback, CallbackList
from stable_baselines3.common.logger import Logger
from stable_baselines3.common.utils import set_random_seed
from stable_baselines3.common.vec_env import DummyVecEnv, VecEnv

from safeknob.config import EnvConfig, ExperimentConfig, LagrangeConfig, PPOConfig
from safeknob.envs import make_env
from safeknob.envs.vec import batched_vec_env
from safeknob.rl.lagrangian import CostPenaltyVecEnv, LagrangeCallback


def env_factory(env_cfg: EnvConfig, render_mode: str | None = None) -> Callable[[], gym.Env]:
    """A picklable constructor of the experiment's cost-aware env."""
    return functools.partial(
        make_env, env_cfg.id, dict(env_cfg.kwargs), env_cfg.cost_fn, render_mode
    )


def make_vec_env(env_cfg: EnvConfig, n_envs: int) -> VecEnv:
    """``n_envs`` copies of the experiment's env: the batched numpy VecEnv of a built-in env
    (same episodes as a ``DummyVecEnv`` seeded alike, several times faster;
    ``safeknob.envs.vec``), else a ``DummyVecEnv``."""
    venv = batched_vec_env(env_cfg.id, dict(env_cfg.kwargs), env_cfg.cost_fn, n_envs)
    return venv if venv is not None else DummyVecEnv([env_factory(env_cfg)] * n_envs)


ADAM_KWARGS: dict[str, Any] = {"foreach": True}
"""Keyword arguments of every Adam here (PPO's, BC's, AIRL's discriminator). torch's
multi-tensor ("foreach") Adam updates all parameter tensors in a few kernels instead of a
Python loop over them; on CPU torch picks the loop by default. The arithmetic per element is
the same, so trained weights are bit-identical (``tests/test_training.py``); PPO trains 2-4%
faster on these small networks (``make bench``)."""


def build_ppo(venv: VecEnv, cfg: PPOConfig, seed: int, tb_dir: Path | None = None) -> PPO:
    """PPO with the experiment's settings, one torch thread, seeded."""
    torch.set_num_threads(1)
    fast_distributions()
    set_random_seed(seed)
    model = PPO(
        "MlpPolicy",
        venv,
        n_steps=cfg.n_steps,
        batch_size=cfg.batch_size,
        n_epochs=cfg.n_epochs,
        learning_rate=cfg.learning_rate,
        gamma=cfg.gamma,
        gae_lambda=cfg.gae_lambda,
        clip_range=cfg.clip_range,
        ent_coef=cfg.ent_coef,
        # SB3's own Adam setting (eps 1e-5, which it adds only when given no optimizer_kwargs)
        policy_kwargs={
            "net_arch": list(cfg.net_arch),
            "optimizer_kwargs": {"eps": 1e-5, **ADAM_KWARGS},
        },
        seed=seed,
        device="cpu",
        verbose=0,
        tensorboard_log=str(tb_dir) if tb_dir else None,
    )
    if not tb_dir:
        # SB3 would otherwise make an empty $TMPDIR/SB3-<date> folder for its default logger.
        model.set_logger(Logger(None, []))
    return model


class ProgressCallback(BaseCallback):
    """Advances a rich progress task by the env steps done."""

    def __init__(self, progress: Progress | None, task: TaskID | None) -> None:
        super().__init__()
        self.progress = progress
        self.task = task
        self._last = 0

    def _on_step(self) -> bool:
        if self.progress is not None and self.task is not None:
            n = self.num_timesteps
            if n - self._last >= 1024:
                self.progress.update(self.task, advance=n - self._last)
                self._last = n
        return True

    def _on_training_end(self) -> None:
        if self.progress is not None and self.task is not None:
            self.progress.update(self.task, advance=self.num_timesteps - self._last)


class SnapshotCallback(BaseCallback):
    """Keeps copies of the policy weights over the last ``fraction`` of training (the
    iterates a Lagrangian method deploys), every ``every`` rollouts.

    A snapshot is taken at the end of a rollout, before the update, so it is the policy that
    generated that rollout; with ``wrapper`` given, ``points`` records the mean episode
    objective (the reward being maximized) and cost of the episodes that rollout finished.
    """

    def __init__(
        self,
        total_steps: int,
        fraction: float = 0.1,
        every: int = 1,
        wrapper: CostPenaltyVecEnv | None = None,
    ) -> None:
        super().__init__()
        self.start = int(total_steps * (1 - fraction))
        self.every = max(1, every)
        self.wrapper = wrapper
        self.snapshots: list[dict[str, torch.Tensor]] = []
        self.points: list[tuple[float, float, int]] = []
        self._n = 0
        self._seen = 0

    def _on_step(self) -> bool:
        return True

    def _on_rollout_end(self) -> None:
        seen = len(self.wrapper.stats.costs) if self.wrapper is not None else 0
        if self.num_timesteps >= self.start:
            self._n += 1
            if self._n % self.every == 0:
                sd = self.model.policy.state_dict()
                self.snapshots.append({k: v.detach().clone() for k, v in sd.items()})
                if self.wrapper is not None:
                    st = self.wrapper.stats
                    objs = st.objectives[self._seen : seen]
                    costs = st.costs[self._seen : seen]
                    n = len(costs)
                    self.points.append(
                        (
                            float(np.mean(objs)) if n else float("nan"),
                            float(np.mean(costs)) if n else float("nan"),
                            n,
                        )
                    )
        self._seen = seen


@dataclass
class TrainResult:
    model: PPO
    history: list[dict[str, float]] = field(default_factory=list)
    snapshots: list[dict[str, torch.Tensor]] = field(default_factory=list)
    points: list[tuple[float, float, int]] = field(default_factory=list)
    final_lambda: float | None = None


def train_ppo(
    cfg: ExperimentConfig,
    steps: int,
    seed: int,
    budget: float | None = None,
    lagrange: LagrangeConfig | None = None,
    two_sided: bool = False,
    reward_fn: Callable[..., np.ndarray] | None = None,
    venv: VecEnv | None = None,
    progress: Progress | None = None,
    task: TaskID | None = None,
    snapshot_fraction: float = 0.0,
    extra_callbacks: list[BaseCallback] | None = None,
    tb_dir: Path | None = None,
    warmstart: Callable[[PPO], None] | None = None,
    ppo: PPOConfig | None = None,
) -> TrainResult:
    """Train PPO on the env reward (``budget=None``) or PPO-Lagrangian under an episode-cost
    ``budget``; ``reward_fn`` replaces the env reward (a learned reward). ``ppo`` replaces
    the experiment's PPO settings (a method's: ``Method.ppo``); a given ``venv``
    must have its ``n_envs``."""
    ppo = ppo or cfg.ppo
    base = venv if venv is not None else make_vec_env(cfg.env, ppo.n_envs)
    if base.num_envs != ppo.n_envs:
        raise ValueError(f"the VecEnv has {base.num_envs} envs, the PPO settings {ppo.n_envs}")
    wrapper = CostPenaltyVecEnv(base, reward_fn=reward_fn)
    model = build_ppo(wrapper, ppo, seed, tb_dir)
    if warmstart is not None:
        warmstart(model)
    callbacks: list[BaseCallback] = [ProgressCallback(progress, task)]
    lag_cb = None
    if budget is not None:
        lag_cb = LagrangeCallback(wrapper, budget, lagrange or cfg.lagrange, two_sided)
        callbacks.append(lag_cb)
    snap_cb = None
    if snapshot_fraction > 0:
        snap_cb = SnapshotCallback(steps, snapshot_fraction, wrapper=wrapper)
        callbacks.append(snap_cb)
    callbacks.extend(extra_callbacks or [])
    model.learn(total_timesteps=steps, callback=CallbackList(callbacks))
    return TrainResult(
        model=model,
        history=lag_cb.history if lag_cb else [],
        snapshots=snap_cb.snapshots if snap_cb else [],
        points=snap_cb.points if snap_cb else [],
        final_lambda=float(wrapper.lam[0]) if budget is not None else None,
    )


def fast_distributions() -> None:
    """Skip torch.distributions' argument checks (PPO builds a distribution for every
    forward pass; the checks were ~10% of a training step's time here). They only raise on
    invalid parameters, so the numbers are the same."""
    torch.distributions.Distribution.set_default_validate_args(False)


def load_ppo(path: Path, **kwargs: Any) -> PPO:
    """Load a saved PPO (``PPO.load`` works under torch >= 2.6; see STACK.md)."""
    torch.set_num_threads(1)
    fast_distributions()
    return PPO.load(str(path), device="cpu", **kwargs)


def set_threads() -> None:
    """One torch thread per process (2 threads on a busy 2-core machine is ~17x slower), and
    no known-harmless upstream warnings (imitation 1.0.1 with torch 2.13 / numpy 2)."""
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore", message="Converting a tensor with requires_grad")
    warnings.filterwarnings("ignore", message="tried to wrap")
