"""``conditioned``: one PPO-Lagrangian policy that sees alpha in its observation.

``--reward env`` (``conditioned``) trains on the env's reward; ``--reward airl``
(``conditioned-airl``) on the learned task reward of both experts' AIRL rewards, in the
absorbing fixed-horizon env they were learned in, starting from BC of the demonstrations.

During training every episode draws alpha uniformly from a grid of ``conditioned_bins``
values; each grid value keeps its own PID multiplier for its budget d(alpha). After one
training run, ``blend --method conditioned --alpha A`` produces an agent for any A at once:
the policy is queried with A appended to the observation (values between grid points are
interpolated by the network). The deployed agent averages the last iterates, as ``budget``.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.vec_env import VecEnv, VecEnvWrapper

from safeknob.artifacts import atomic_dir, make_meta, stage_config, write_json
from safeknob.config import LagrangeConfig, tb_dir
from safeknob.envs.vec import vec_env
from safeknob.evaluation.rollout import Agent
from safeknob.methods.base import BlendContext, Method
from safeknob.methods.learned import learned_lagrange, learned_scale, learned_task_reward
from safeknob.methods.registry import register
from safeknob.rl.airl import absorbing_factory
from safeknob.rl.lagrangian import CostPenaltyVecEnv
from safeknob.rl.multiplier import LagrangeMultiplier
from safeknob.rl.snapshots import save_snapshots, snapshot_agent
from safeknob.rl.training import (
    ProgressCallback,
    SnapshotCallback,
    build_ppo,
    load_ppo,
    make_vec_env,
)
from safeknob.rl.warmstart import bc_warmstart
from safeknob.seeding import folder_suffix

SHARED = "shared"


def augmenter(space: gym.Space):
    """(function obs, alpha -> augmented float32 obs, augmented Box space)."""
    if isinstance(space, gym.spaces.Discrete):
        n = int(space.n)

        def aug(obs: np.ndarray, alpha: np.ndarray) -> np.ndarray:
            obs = np.asarray(obs).astype(np.int64).reshape(-1) - int(space.start)
            out = np.zeros((len(obs), n + 1), dtype=np.float32)
            out[np.arange(len(obs)), obs] = 1.0
            out[:, -1] = alpha
            return out

        return aug, gym.spaces.Box(0.0, 1.0, shape=(n + 1,), dtype=np.float32)
    if isinstance(space, gym.spaces.Box) and len(space.shape) == 1:
        low = np.append(space.low, 0.0).astype(np.float32)
        high = np.append(space.high, 1.0).astype(np.float32)

        def aug_box(obs: np.ndarray, alpha: np.ndarray) -> np.ndarray:
            obs = np.asarray(obs, dtype=np.float32).reshape(len(alpha), -1)
            return np.concatenate([obs, np.asarray(alpha, np.float32)[:, None]], axis=1)

        return aug_box, gym.spaces.Box(low, high, dtype=np.float32)
    raise ValueError(f"conditioned supports Discrete or flat Box observations, got {space}")


def conditioned_warmstart(ctx: BlendContext, model: Any, epochs: int = 5) -> None:
    """Behavioural cloning of both experts into the conditioned policy, each expert's
    demonstrations labelled with its own alpha (0 safe, 1 reckless): training starts with
    both routes at the ends of the knob."""
    aug, space = augmenter(model.get_env().venv.observation_space)  # the un-augmented env's
    trajs = [
        dataclasses.replace(t, obs=aug(np.asarray(t.obs), np.full(len(t.obs), alpha)))
        for role, alpha in (("safe", 0.0), ("reckless", 1.0))
        for t in ctx.store.demos(role)[0]
    ]
    seed = ctx.stream("warmstart", "conditioned")
    bc_warmstart(model, trajs, space, model.action_space, seed, epochs)


class ConditionedVecEnv(VecEnvWrapper):
    """Appends each episode's alpha to the observation and penalizes the reward with that
    alpha's multiplier: ``(r - lam[a] c) / (1 + |lam[a]|)``."""

    def __init__(self, venv: VecEnv, grid: np.ndarray, seed: int) -> None:
        self.aug, space = augmenter(venv.observation_space)
        super().__init__(venv, observation_space=space)
        self.grid = np.asarray(grid, dtype=float)
        self.lam = np.zeros(len(self.grid))
        self.rng = np.random.default_rng(seed)
        self.bin = self.rng.integers(len(self.grid), size=self.num_envs)
        self._cost = np.zeros(self.num_envs)
        self.finished: list[tuple[int, float]] = []

    def reset(self):
        obs = self.venv.reset()
        self._cost[:] = 0.0
        return self.aug(obs, self.grid[self.bin])

    def step_wait(self):
        obs, rew, dones, infos = self.venv.step_wait()
        cost = np.array([float(info.get("cost", 0.0)) for info in infos])
        self._cost += cost
        lam = self.lam[self.bin]
        shaped = (rew - lam * cost) / (1.0 + np.abs(lam))
        for i, d in enumerate(dones):
            if d:
                if "terminal_observation" in infos[i]:
                    term = np.asarray(infos[i]["terminal_observation"])[None]
                    infos[i]["terminal_observation"] = self.aug(term, self.grid[[self.bin[i]]])[0]
                self.finished.append((int(self.bin[i]), float(self._cost[i])))
                self._cost[i] = 0.0
                self.bin[i] = self.rng.integers(len(self.grid))
        return self.aug(obs, self.grid[self.bin]), shaped.astype(np.float32), dones, infos


class BinLagrangeCallback(BaseCallback):
    """One PID multiplier per alpha value (:class:`~safeknob.rl.multiplier.LagrangeMultiplier`,
    two-sided), updated from that value's finished episodes."""

    def __init__(self, env: ConditionedVecEnv, budgets: np.ndarray, cfg: LagrangeConfig) -> None:
        super().__init__()
        self.env = env
        self.cfg = cfg
        self.multipliers = [LagrangeMultiplier(b, cfg, two_sided=True) for b in budgets]
        self.pending: list[list[float]] = [[] for _ in budgets]
        self._seen = 0

    def _on_step(self) -> bool:
        return True

    def _on_rollout_end(self) -> None:
        active = [m.count_rollout() for m in self.multipliers]
        new = self.env.finished[self._seen :]
        self._seen = len(self.env.finished)
        for b, c in new:
            self.pending[b].append(c)
        if not all(active):  # the warm-up holds every bin alike
            self.pending = [[] for _ in self.multipliers]
            return
        for b, mult in enumerate(self.multipliers):
            # Update once a bin has seen enough episodes (about a window's worth).
            if len(self.pending[b]) >= 8:
                self.env.lam[b] = mult.update(float(np.mean(self.pending[b])))
                self.pending[b] = []
        self.logger.record("lagrange/lambda_mean", float(np.mean(self.env.lam)))


@register(
    "conditioned",
    rewards=("env", "airl"),
    default_reward="env",
    bare_default=True,
    needs_rewards=("reckless", "safe"),
    shared_policy=True,
    cost=4,
    summary="one PPO-Lagrangian policy that sees alpha in its observation",
)
class ConditionedMethod(Method):
    def steps(self, ctx: BlendContext) -> int:
        return ctx.run.experiment.blend.conditioned_steps

    def grid(self, ctx: BlendContext) -> np.ndarray:
        return np.linspace(0.0, 1.0, ctx.run.experiment.blend.conditioned_bins)

    def shared_folder(self, ctx: BlendContext, seed: int | None = None) -> Path:
        """The one policy of training seed ``seed`` (default ``ctx.seed``): ``shared/`` for
        the experiment's first seed, ``shared_seed-S/`` for the others."""
        s = ctx.seed if seed is None else seed
        sfx = folder_suffix(ctx.run.experiment.blend.seeds[0], s)
        return ctx.run.paths.blends / self.name / (SHARED + sfx)

    def _shared_config(self, ctx: BlendContext) -> dict[str, Any]:
        out = {
            **stage_config(ctx.run.experiment, "env", "ppo", "lagrange", "blend"),
            "c_safe": ctx.c_safe,
            "c_reck": ctx.c_reck,
            "train_seed": ctx.seed,
            "reward": self.reward,
        }
        if self.learned_rewards:  # same [rewards] settings, same (deterministic) rewards
            out.update(stage_config(ctx.run.experiment, "rewards", "demos"))
        return out

    def ensure_trained(self, ctx: BlendContext) -> tuple[Path, float]:
        """Train the shared conditioned policy unless an up-to-date one exists; returns its
        folder and the seconds spent training now (0 if reused)."""
        folder = self.shared_folder(ctx)
        config = self._shared_config(ctx)
        meta_path = folder / "meta.json"
        if meta_path.is_file() and not ctx.cache.get("conditioned_retrain", ctx.run.force):
            try:
                if json.loads(meta_path.read_text()).get("config") == json.loads(
                    json.dumps(config)
                ):
                    return folder, 0.0
            except json.JSONDecodeError:
                pass
        exp = ctx.run.experiment
        t0 = time.perf_counter()
        grid = self.grid(ctx)
        budgets = np.array([ctx.budget(a) for a in grid])
        ppo = self.ppo(ctx)
        seed = ctx.stream("agent", self.name)
        lagrange = exp.lagrange
        if self.reward == "airl":
            # The learned task reward in the absorbing fixed-horizon env it was learned in
            # (CostPenaltyVecEnv with no multiplier only swaps the reward); the multiplier's
            # scale comes from the demonstrations (safeknob.methods.learned).
            base: VecEnv = CostPenaltyVecEnv(
                vec_env(absorbing_factory(exp.env), ppo.n_envs), reward_fn=learned_task_reward(ctx)
            )
            lagrange = learned_lagrange(ctx, lagrange)
        else:
            base = make_vec_env(exp.env, ppo.n_envs)
        venv = ConditionedVecEnv(base, grid, seed)
        model = build_ppo(venv, ppo, seed, tb_dir(ctx.run, "blend", self.name, folder.name))
        if exp.blend.warmstart or self.reward == "airl":
            conditioned_warmstart(ctx, model)
        steps = self.steps(ctx)
        lag = BinLagrangeCallback(venv, budgets, lagrange)
        snap = SnapshotCallback(steps, 0.1)
        model.learn(steps, callback=[ProgressCallback(ctx.progress, ctx.task), lag, snap])
        seconds = time.perf_counter() - t0
        with atomic_dir(folder) as tmp:
            model.save(tmp / "model.zip")
            n = save_snapshots(tmp, snap.snapshots)
            write_json(
                tmp / "meta.json",
                make_meta(
                    "blend-shared",
                    config,
                    ctx.seed,
                    wall_seconds=seconds,
                    grid=grid.tolist(),
                    budgets=budgets.tolist(),
                    final_lambdas=venv.lam.tolist(),
                    learned_scale=learned_scale(ctx) if self.reward == "airl" else None,
                    snapshots=n,
                ),
            )
        ctx.cache["conditioned_retrain"] = False  # later alphas of this run reuse it
        return folder, seconds

    def train(self, ctx: BlendContext, alpha: float, folder: Path) -> dict[str, Any]:
        shared, seconds = self.ensure_trained(ctx)
        return {
            "shared_model": str(shared),
            "shared_train_seconds": seconds,
            "train_seconds_note": "shared policy; counted once",
        }

    def load_agent(self, ctx: BlendContext, folder: Path, meta: dict[str, Any]) -> Agent:
        shared = self.shared_folder(ctx, int(meta.get("seed", ctx.seed)))
        model = load_ppo(shared / "model.zip")
        aug, _ = augmenter(make_vec_env(ctx.run.experiment.env, 1).observation_space)
        alpha = float(meta.get("internal_alpha", meta["alpha"]))

        def transform(obs: np.ndarray) -> np.ndarray:
            return aug(obs, np.full(len(obs), alpha))

        return snapshot_agent(shared, model, obs_transform=transform)
