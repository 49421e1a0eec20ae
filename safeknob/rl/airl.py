"""Learned rewards: imitation's AIRL on one expert's demonstrations, made re-optimizable.

What mattered on the hazard grid (see ``experiments/NOTES.md`` and STACK.md):

* **Fixed horizon with an absorbing goal.** AIRL needs fixed-horizon episodes, so both the
  generator's env and the demonstrations are padded: after the goal the agent stays in an
  absorbing state (reward 0, cost 0) until the horizon. PPO that later maximizes the learned
  reward runs in the same absorbing env, so it sees the reward it was trained against.
* **State-only reward** ``g(s')`` plus a potential shaping term (imitation's
  ``BasicShapedRewardNet`` with ``use_state=False, use_next_state=True``); the unshaped
  ``g`` is what downstream agents maximize.
* **The transition log-probability in the discriminator.** imitation's AIRL logit is
  ``f(s, a, s') - log pi(a|s)``; at the absorbing goal every action is equivalent, so the
  generator stays uniform there and the learned goal reward is pinned near ``-log |A|``:
  maximizing it loiters on path cells. With a tabular model we use
  ``log sum_a pi(a|s) P(s'|s, a)``, which is 0 at the goal (and handles wall bumps).
* **Enough demonstrations** (hundreds of episodes), so cells reached only by slipping do
  not get noisy, high rewards.
"""

from __future__ import annotations

import functools
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest import mock

import gymnasium as gym
import numpy as np
import torch as th
import tqdm
from imitation.algorithms.adversarial.airl import AIRL
from imitation.data import types as imit_types
from imitation.data.types import TrajectoryWithRew
from imitation.rewards.reward_nets import BasicShapedRewardNet
from imitation.util import logger as imit_logger

from safeknob.artifacts import write_json
from safeknob.config import EnvConfig, RunConfig, tb_dir
from safeknob.envs import make_env, tabular_model
from safeknob.envs.vec import AbsorbingCore, make_core, vec_env
from safeknob.errors import ArtifactError, UserError
from safeknob.rl.training import ADAM_KWARGS, build_ppo
from safeknob.rl.warmstart import bc_warmstart

STAGE = "learn-rewards"
"""The stage (``safeknob learn-rewards``) whose TensorBoard folder AIRL logs to."""


# ---------------------------------------------------------------------------- fixed horizon
def env_horizon(env: gym.Env) -> int:
    base = env.unwrapped
    h = getattr(base, "horizon", None)
    if h is None and env.spec is not None:
        h = env.spec.max_episode_steps
    if h is None:
        raise ArtifactError(
            "learned rewards need a fixed-horizon env (an env attribute `horizon` or a "
            "registered max_episode_steps)"
        )
    return int(h)


class AbsorbingWrapper(gym.Wrapper):
    """After the inner env terminates, stay in its last observation with reward 0 and cost 0
    until the horizon; every episode then lasts exactly ``horizon`` steps."""

    def __init__(self, env: gym.Env, horizon: int) -> None:
        super().__init__(env)
        self.horizon = horizon
        self._t = 0
        self._absorbed = False
        self._obs: Any = None

    def reset(self, **kwargs):
        self._t = 0
        self._absorbed = False
        obs, info = self.env.reset(**kwargs)
        self._obs = obs
        return obs, info

    def step(self, action):
        self._t += 1
        if self._absorbed:
            obs, rew, info = self._obs, 0.0, {"cost": 0.0, "absorbing": True}
        else:
            obs, rew, term, _trunc, info = self.env.step(action)
            self._obs = obs
            self._absorbed = bool(term)
        return obs, rew, False, self._t >= self.horizon, info


def absorbing_factory(env_cfg: EnvConfig) -> Callable[[], gym.Env]:
    def make() -> gym.Env:
        env = make_env(env_cfg.id, dict(env_cfg.kwargs), env_cfg.cost_fn)
        return AbsorbingWrapper(env, env_horizon(env))

    def batched(n: int):
        """The same env, ``n`` copies stepped at once (``safeknob.envs.vec``), or None."""
        core = make_core(env_cfg.id, dict(env_cfg.kwargs), env_cfg.cost_fn, n)
        return None if core is None else AbsorbingCore(core, core.env.horizon)

    make.batched = batched  # type: ignore[attr-defined]
    return make


def pad(traj: TrajectoryWithRew, horizon: int, noop: Any) -> TrajectoryWithRew:
    """Pad a terminated trajectory with absorbing steps to exactly ``horizon`` transitions
    (observation repeated, action ``noop``, reward and cost 0, ``info["absorbing"] = True``).

    Raises ArtifactError for an episode longer than ``horizon`` and for a time-out
    (``terminal=False``) shorter than it: padding a time-out would teach AIRL that the
    episode reached an absorbing goal."""
    n = len(traj.acts)
    if n > horizon:
        raise ArtifactError(
            f"a demonstration episode has {n} steps, more than the env's horizon {horizon}: "
            "AIRL needs fixed-horizon episodes; record the demonstrations with this env "
            "(`safeknob collect-demos --force`) or set the env's horizon"
        )
    if n == horizon:
        return traj
    if not traj.terminal:
        raise ArtifactError(
            f"a demonstration episode ended by time-out after {n} steps, before the env's "
            f"horizon {horizon}: it cannot be padded as if it had reached the goal; record "
            "whole episodes (`safeknob collect-demos --force`) or set the env's horizon"
        )
    k = horizon - n
    tobs = np.asarray(traj.obs)
    obs = np.concatenate([tobs, np.repeat(tobs[-1:], k, axis=0)])
    acts = np.concatenate([traj.acts, np.repeat(np.asarray([noop]), k, axis=0)])
    own = np.empty(n, dtype=object)
    own[:] = [dict(x) for x in traj.infos] if traj.infos is not None else [{} for _ in range(n)]
    absorbing = np.empty(k, dtype=object)
    absorbing[:] = [{"cost": 0.0, "absorbing": True} for _ in range(k)]
    infos = np.concatenate([own, absorbing])
    rews = np.concatenate([traj.rews, np.zeros(k)])
    return TrajectoryWithRew(obs=obs, acts=acts, infos=infos, terminal=True, rews=rews)


# ---------------------------------------------------------------------------- AIRL
def absorbing_mask(infos: Any) -> np.ndarray:
    """Which transitions of a sampled batch are absorbing steps (``info["absorbing"]``)."""
    return np.array([bool(isinstance(i, dict) and i.get("absorbing")) for i in infos], dtype=bool)


class AbsorbingAIRL(AIRL):
    """AIRL with absorbing-state handling in the style of Kostrikov et al.,
    "Discriminator-Actor-Critic" (ICLR 2019), needing no transition model.

    imitation's logit is ``f(s, a, s') - log pi(a|s)``. On an absorbing step (after the goal,
    until the fixed horizon: ``info["absorbing"]``, set by :class:`AbsorbingWrapper` and
    :func:`pad`) the next state does not depend on the action, so the generator's
    log-probability of the observed *transition* is ``log 1 = 0``; with ``log pi(a|s)``
    instead, the learned reward there is pinned near ``-log |A|`` (discrete) or a density
    (Gaussian) and maximizing it loiters. This subclass sets the generator term to 0 on
    absorbing steps; the absorbing state's reward ``g`` is then learned like any other.

    With ``center_entropy`` the generator term elsewhere is ``log pi(a|s) + H(pi(.|s))``:
    it has mean 0 under the generator at every state, so a state's learned reward does not
    carry the generator's entropy there (a Gaussian's log-density is an arbitrary offset
    against the absorbing steps' 0). The shift is a function of the state only, so AIRL's
    state-only reward absorbs it. Default off (see experiments/NOTES.md).
    """

    def __init__(self, *, center_entropy: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.center_entropy = center_entropy

    def _make_disc_train_batches(
        self, *, gen_samples: Any = None, expert_samples: Any = None
    ) -> Any:
        # Draw the samples here (as the parent would, same order) to see their infos.
        if expert_samples is None:
            expert_samples = self._next_expert_batch()
        if gen_samples is None:
            if self._gen_replay_buffer.size() == 0:
                raise RuntimeError("No generator samples for training. Call `train_gen()` first.")
            gen_samples = imit_types.dataclass_quick_asdict(
                self._gen_replay_buffer.sample(self.demo_batch_size)
            )
        m_exp = absorbing_mask(expert_samples["infos"])
        m_gen = absorbing_mask(gen_samples["infos"])
        mb = self.demo_minibatch_size
        batches = super()._make_disc_train_batches(
            gen_samples=gen_samples, expert_samples=expert_samples
        )
        for k, batch in enumerate(batches):
            mask = th.as_tensor(
                np.concatenate([m_exp[k * mb : (k + 1) * mb], m_gen[k * mb : (k + 1) * mb]])
            )
            logp = batch["log_policy_act_prob"].clone()
            if self.center_entropy:
                with th.no_grad():
                    policy: Any = self.policy
                    state = batch["state"]
                    if isinstance(self.venv.observation_space, gym.spaces.Discrete):
                        state = state.argmax(-1).float()  # the policy takes the index
                    ent = policy.get_distribution(state).entropy()
                logp = logp + ent.reshape(logp.shape)
            logp[mask] = 0.0
            yield {**batch, "log_policy_act_prob": logp}


class TransitionAIRL(AIRL):
    """AIRL whose discriminator subtracts ``log sum_a pi(a|s) P(s'|s, a)``, the generator's
    log-probability of the observed transition, instead of ``log pi(a|s)`` (tabular envs)."""

    def __init__(self, *, transition: np.ndarray, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._P = th.as_tensor(transition, dtype=th.float32)

    def _make_disc_train_batches(self, **kwargs: Any):
        for batch in super()._make_disc_train_batches(**kwargs):
            s = batch["state"].argmax(-1)
            s2 = batch["next_state"].argmax(-1)
            with th.no_grad():
                policy: Any = self.policy
                dist = policy.get_distribution(s.float())
                probs = dist.distribution.probs  # type: ignore[attr-defined]  # (B, A)
                trans: Any = self._P
                p = (probs * trans[s, :, s2]).sum(-1)
                logp = th.log(p.clamp_min(1e-8))
            out = dict(batch)
            out["log_policy_act_prob"] = logp
            yield out


def make_reward_net(
    obs_space: gym.Space, act_space: gym.Space, gamma: float
) -> BasicShapedRewardNet:
    return BasicShapedRewardNet(
        obs_space,
        act_space,
        reward_hid_sizes=(32,),
        potential_hid_sizes=(32, 32),
        use_state=False,
        use_action=False,
        use_next_state=True,
        use_done=False,
        discount_factor=gamma,
    )


def train_airl(
    rc: RunConfig,
    trajs: list[TrajectoryWithRew],
    steps: int,
    seed: int,
    role: str = "reckless",
    progress=None,
    task=None,
) -> tuple[BasicShapedRewardNet, dict[str, Any]]:
    """AIRL on ``trajs``; returns the reward net and training facts."""
    exp = rc.experiment
    make = absorbing_factory(exp.env)
    probe = make()
    horizon = env_horizon(probe)
    model = tabular_model(probe)
    noop = noop_action(probe.action_space)
    obs_space, act_space = probe.observation_space, probe.action_space
    probe.close()
    demos = [pad(t, horizon, noop) for t in trajs]
    if isinstance(obs_space, gym.spaces.Discrete):
        demos = [
            TrajectoryWithRew(
                obs=np.asarray(t.obs).astype(np.int64),
                acts=np.asarray(t.acts).astype(np.int64),
                infos=t.infos,
                terminal=t.terminal,
                rews=t.rews,
            )  # fmt: skip
            for t in demos
        ]
    venv = vec_env(make, exp.ppo.n_envs)
    venv.seed(seed)
    gen = build_ppo(venv, exp.ppo, seed)
    if exp.rewards.generator_warmstart:
        # Start the generator at the expert (BC on its demonstrations).
        bc_warmstart(gen, trajs, obs_space, act_space, seed)
    net = make_reward_net(obs_space, act_space, exp.ppo.gamma)
    kwargs: dict[str, Any] = {
        "demonstrations": demos,
        "demo_batch_size": int(min(512, sum(len(t.acts) for t in demos))),
        "venv": venv,
        "gen_algo": gen,
        "reward_net": net,
        "n_disc_updates_per_round": 16,
        "disc_opt_kwargs": {"lr": 1e-3, **ADAM_KWARGS},
        "gen_replay_buffer_capacity": replay_capacity(
            exp.rewards.replay_rounds, exp.ppo.n_envs * gen.n_steps, steps
        ),
    }
    tb = tb_dir(rc, STAGE, role)
    with tempfile.TemporaryDirectory() as logdir:
        if tb is not None:
            tb.mkdir(parents=True, exist_ok=True)
        kwargs["custom_logger"] = imit_logger.configure(
            str(tb) if tb is not None else logdir,
            format_strs=["tensorboard"] if tb is not None else [],
        )
        kwargs["log_dir"] = logdir
        term = generator_term(exp.rewards.generator_term, model is not None)
        if term == "transition":
            assert model is not None
            trainer: AIRL = TransitionAIRL(transition=model.P, **kwargs)
        elif term == "policy":
            trainer = AIRL(**kwargs)  # imitation's own logit, for comparison
        else:
            trainer = AbsorbingAIRL(center_entropy=term == "absorbing-centered", **kwargs)
        done = [0]
        n_rounds = steps // trainer.gen_train_timesteps
        restarts = restart_rounds(n_rounds, exp.rewards.generator_restarts)
        restart_seed = {r: seed + 1 + k for k, r in enumerate(restarts)}

        def cb(round_: int) -> None:
            if round_ in restart_seed:
                reinit_policy(gen, restart_seed[round_])
            if progress is not None and task is not None:
                n = gen.num_timesteps
                progress.update(task, advance=n - done[0])
                done[0] = n

        # imitation draws its own tqdm bar per round; ours (rich) already shows progress.
        quiet_tqdm = functools.partial(tqdm.tqdm, disable=True)
        with mock.patch("imitation.algorithms.adversarial.common.tqdm.tqdm", quiet_tqdm):
            trainer.train(steps, callback=cb)
    return net, {
        "horizon": horizon,
        "generator_term": term,
        "demos": len(trajs),
        "generator_restart_rounds": restarts,
        "replay_capacity": trainer._gen_replay_buffer.capacity,
    }


def replay_capacity(replay_rounds: int, per_round: int, steps: int) -> int:
    """Transitions the generator replay buffer holds: ``replay_rounds`` rounds of
    ``per_round`` samples, every round of a ``steps``-step run for 0, never more than that."""
    whole = max(steps, per_round)
    return whole if replay_rounds == 0 else min(replay_rounds * per_round, whole)


def restart_rounds(n_rounds: int, restarts: int) -> list[int]:
    """The rounds after which the generator is re-initialized: ``restarts`` evenly spaced
    rounds strictly inside ``range(n_rounds)`` (the last round is never one)."""
    restarts = min(restarts, max(n_rounds - 1, 0))  # at most one per round but the last
    return sorted({n_rounds * (k + 1) // (restarts + 1) - 1 for k in range(restarts)} - {-1})


def reinit_policy(model: Any, seed: int) -> None:
    """Replace an SB3 on-policy model's policy (and its optimizer) by a freshly initialized
    one drawn from ``seed``, as ``_setup_model`` builds it."""
    th.manual_seed(seed)
    model.policy = model.policy_class(
        model.observation_space,
        model.action_space,
        model.lr_schedule,
        use_sde=model.use_sde,
        **model.policy_kwargs,
    ).to(model.device)


GENERATOR_TERMS = ("auto", "transition", "absorbing", "absorbing-centered", "policy")


def generator_term(setting: str, tabular: bool) -> str:
    """The discriminator's generator term for ``rewards.generator_term``: ``"transition"``
    (needs a tabular model) or the model-free ``"absorbing"`` / ``"absorbing-centered"``
    (:class:`AbsorbingAIRL`); ``"auto"`` takes the transition term where a model exists."""
    if setting == "auto":
        return "transition" if tabular else "absorbing"
    if setting == "transition" and not tabular:
        raise ArtifactError(
            "rewards.generator_term = 'transition' needs an env with a tabular model; use "
            "'absorbing' (no model needed) or 'auto'"
        )
    return setting


# ---------------------------------------------------------------------------- using rewards
def reward_of(net: BasicShapedRewardNet, next_obs: np.ndarray, obs_space: gym.Space) -> np.ndarray:
    """Unshaped learned reward g(s') for a batch of next observations, shape (n,)."""
    with th.no_grad():
        x = th.as_tensor(np.asarray(next_obs))
        if isinstance(obs_space, gym.spaces.Discrete):
            x = th.nn.functional.one_hot(x.long().reshape(-1), int(obs_space.n)).float()
        else:
            x = x.float().reshape(len(x), -1)
        mlp: Any = net.base.mlp  # type: ignore[union-attr]
        return mlp(x).reshape(-1).numpy().astype(float)


def save_reward(folder: Path, net: BasicShapedRewardNet, stats: dict[str, float]) -> None:
    th.save(net.state_dict(), folder / "reward_net.pt")
    write_json(folder / "standardize.json", stats)


@dataclass
class LearnedReward:
    """One role's learned reward g(s'), standardized with the mean and std over the union of
    both demonstration sets; called as ``reward_fn(obs, acts, next_obs, dones)`` (the
    signature :class:`~safeknob.rl.lagrangian.CostPenaltyVecEnv` takes), shape (n,)."""

    net: BasicShapedRewardNet
    obs_space: gym.Space
    mean: float
    std: float
    meta: dict[str, Any]

    def unshaped(self, next_obs: np.ndarray) -> np.ndarray:
        """g(s') before standardization, shape (n,)."""
        return reward_of(self.net, next_obs, self.obs_space)

    def __call__(
        self, obs: np.ndarray, acts: np.ndarray, next_obs: np.ndarray, dones: np.ndarray
    ) -> np.ndarray:
        return (reward_of(self.net, next_obs, self.obs_space) - self.mean) / self.std


def task_reward(reckless: LearnedReward, safe: LearnedReward | None) -> Callable[..., np.ndarray]:
    """The task reward ``budget --reward airl`` maximizes: the mean of the two experts'
    standardized AIRL rewards when both exist, else the reckless expert's alone.

    Each expert's AIRL reward also encodes *where that expert goes* (it is high on its own
    path), so the reckless reward alone makes every safer route look far worse than its true
    return and the multiplier must grow beyond its cap before cost moves. Both experts chase
    the same task reward, so averaging their rewards keeps the task and cancels most of the
    route preference; the Lagrange multiplier then sets the trade-off with cost.
    """
    if safe is None:
        return reckless

    def fn(
        obs: np.ndarray, acts: np.ndarray, next_obs: np.ndarray, dones: np.ndarray
    ) -> np.ndarray:
        return 0.5 * (reckless(obs, acts, next_obs, dones) + safe(obs, acts, next_obs, dones))

    return fn


def noop_action(space: gym.Space) -> Any:
    """The action padded absorbing steps carry: 0 (discrete) or a zero vector (Box)."""
    return 0 if isinstance(space, gym.spaces.Discrete) else np.zeros(space.shape or ())


def _padded_sum(reward_fn: Callable[..., np.ndarray], traj: TrajectoryWithRew, horizon: int,
                noop: Any) -> float:  # fmt: skip
    """``reward_fn`` summed over ``traj`` padded to ``horizon`` absorbing steps."""
    pt = pad(traj, horizon, noop)
    obs = np.asarray(pt.obs)
    done = np.zeros(len(pt.acts), dtype=bool)
    return float(np.sum(reward_fn(obs[:-1], np.asarray(pt.acts), obs[1:], done)))


def exchange_rate(objectives: dict[str, float], costs: dict[str, float]) -> float:
    """``|G_reck - G_safe| / |C_reck - C_safe|``: the Lagrange multiplier at which the two
    experts' Lagrangians ``G - lambda C`` tie, in objective units per unit of episode cost:
    the scale at which a multiplier turns the knob between the experts, whatever the env or
    the reward's units."""
    dg = abs(objectives["reckless"] - objectives["safe"])
    dc = abs(costs["reckless"] - costs["safe"])
    return dg / max(dc, 1e-9)


def exchange_ratio(
    reward_fn: Callable[..., np.ndarray],
    demos: dict[str, list[TrajectoryWithRew]],
    stats: dict[str, dict[str, float]],
    env_cfg: EnvConfig,
) -> dict[str, float]:
    """The experts' exchange rate (:func:`exchange_rate`) under ``reward_fn`` summed over
    each demonstration padded to the fixed horizon (:func:`pad`, as in the absorbing env a
    learned reward is optimized in), under the env's reward, and their ``ratio``
    (dimensionless): how much larger a Lagrange multiplier must be on ``reward_fn``.

    ``demos`` maps ``"reckless"`` and ``"safe"`` to their trajectories, ``stats`` to their
    mean env return and cost (``return_mean``, ``cost_mean``:
    :func:`safeknob.data.demo_stats`). Raises UserError when the experts' returns (under
    either reward) or costs do not differ."""
    env = make_env(env_cfg.id, dict(env_cfg.kwargs), env_cfg.cost_fn)
    horizon, noop = env_horizon(env), noop_action(env.action_space)
    env.close()
    roles = ("reckless", "safe")
    learned = {r: float(np.mean([_padded_sum(reward_fn, t, horizon, noop) for t in demos[r]]))
               for r in roles}  # fmt: skip
    true = {r: stats[r]["return_mean"] for r in roles}
    costs = {r: stats[r]["cost_mean"] for r in roles}
    for name, obj in (("env's reward", true), ("learned reward", learned)):
        scale = max(abs(obj["reckless"]), abs(obj["safe"]), 1e-12)
        if abs(obj["reckless"] - obj["safe"]) <= 1e-6 * scale:
            raise UserError(
                f"the experts' demonstrations have the same mean return under the {name} "
                f"({obj['reckless']:.6g} vs {obj['safe']:.6g}), so the Lagrange multiplier's "
                "scale on a learned reward is undefined; train the experts longer "
                "(`safeknob train-experts --force`) or use --reward env"
            )
    if abs(costs["reckless"] - costs["safe"]) <= 1e-9:
        raise UserError(
            "the experts' demonstrations have the same mean cost, so there is nothing to "
            "blend; re-record them (`safeknob collect-demos --force`)"
        )
    rate_learned, rate_env = exchange_rate(learned, costs), exchange_rate(true, costs)
    return {
        "learned_gap": learned["reckless"] - learned["safe"],
        "exchange_rate_learned": rate_learned,
        "exchange_rate_env": rate_env,
        "ratio": rate_learned / max(rate_env, 1e-9),
    }


def standardization(
    net: BasicShapedRewardNet, trajs: list[TrajectoryWithRew], space: gym.Space
) -> dict[str, float]:
    """Mean and std of g(s') over every transition of the demonstrations given."""
    nxt = np.concatenate([np.asarray(t.obs)[1:] for t in trajs])
    r = reward_of(net, nxt, space)
    return {"mean": float(r.mean()), "std": float(max(r.std(), 1e-6)), "transitions": int(len(r))}
