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

import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch as th
from imitation.algorithms.adversarial.airl import AIRL
from imitation.data.types import TrajectoryWithRew
from imitation.rewards.reward_nets import BasicShapedRewardNet
from imitation.util import logger as imit_logger
from stable_baselines3.common.vec_env import DummyVecEnv

from safeknob.artifacts import ArtifactError, atomic_dir, make_meta, read_meta, write_json
from safeknob.config import EnvConfig
from safeknob.envs import make_env, tabular_model
from safeknob.stages.common import RunConfig, stage_config

STAGE = "learn-rewards"
FIX = "safeknob learn-rewards"


class RewardCheckError(ArtifactError):
    """A learned reward failed its re-optimization check (the gate): no method trains on it."""


def check_status(meta: dict[str, Any]) -> str:
    """``"passed"``, ``"failed"`` or ``"unchecked"`` (``check_steps = 0``) for a reward's
    meta.json; a meta.json without a gate verdict (an older run) counts as failed."""
    chk = meta.get("check")
    if isinstance(chk, dict) and chk.get("skipped"):
        return "unchecked"
    if isinstance(chk, dict) and chk.get("passed") is True:
        return "passed"
    return "failed"


def demo_stats(trajs: list[TrajectoryWithRew]) -> dict[str, float]:
    """Mean episode return and cost, and the fraction of episodes ending in a terminal state,
    of one expert's demonstrations."""
    from safeknob import data

    return {
        "return_mean": float(np.mean([np.sum(t.rews) for t in trajs])),
        "cost_mean": float(np.mean([np.sum(data.costs(t)) for t in trajs])),
        "terminal_rate": float(np.mean([bool(t.terminal) for t in trajs])),
    }


def gate(
    check: dict[str, Any], cfg: Any, expert_evals: dict[str, dict[str, Any]], role: str
) -> list[str]:
    """The re-optimization gate: what is wrong with ``check`` (empty list: it passed).

    ``check`` holds the fresh PPO's results and its expert's (``expert_return``,
    ``expert_cost``, ``expert_terminal_rate``); ``expert_evals`` both experts' mean return
    and cost (their demonstrations). Scales come from the data, not from the env: the cost
    tolerance is ``cfg.cost_tolerance * |C_reck - C_safe|``, the return tolerance
    ``cfg.return_tolerance * max(|R_reck|, |R_safe|)``, and the PPO's fraction of episodes
    ending in a terminal state may be at most ``cfg.terminal_tolerance`` below its
    expert's."""
    ev = expert_evals
    c_gap = abs(ev["reckless"]["cost_mean"] - ev["safe"]["cost_mean"])
    r_scale = max(abs(ev["reckless"]["return_mean"]), abs(ev["safe"]["return_mean"]))
    c_tol = cfg.cost_tolerance * max(c_gap, 1e-9)
    r_tol = cfg.return_tolerance * max(r_scale, 1e-9)
    cost, ret = check["ppo_cost"][0], check["ppo_return"][0]
    out = []
    if abs(cost - check["expert_cost"]) > c_tol:
        out.append(
            f"cost {cost:.3g} vs the expert's {check['expert_cost']:.3g} (tolerance {c_tol:.3g})"
        )
    if abs(ret - check["expert_return"]) > r_tol:
        out.append(
            f"return {ret:.3g} vs the expert's {check['expert_return']:.3g} (tolerance {r_tol:.3g})"
        )
    need = check["expert_terminal_rate"] - cfg.terminal_tolerance
    if check["ppo_terminal_rate"] < need:
        out.append(
            f"{check['ppo_terminal_rate']:.0%} of episodes reach a terminal state vs "
            f"{check['expert_terminal_rate']:.0%} in the demonstrations"
        )
    check.update(cost_tolerance=c_tol, return_tolerance=r_tol)
    return out


def require_usable(rc: RunConfig, role: str) -> dict[str, Any]:
    """The role's reward meta.json, if a method may train on it. Raises
    :class:`RewardCheckError` when the reward failed its re-optimization check, ArtifactError
    (naming ``safeknob learn-rewards``) when it is missing."""
    meta = read_meta(rc.paths.rewards(role), STAGE, FIX)
    if check_status(meta) == "failed":
        raise RewardCheckError(
            f"the learned {role} reward in {rc.paths.rewards(role)} failed its re-optimization "
            f"check, so no method trains on it; see `{FIX} --role {role}` for why, and "
            f"re-learn it (`{FIX} --force`) with more rewards.airl_steps or demos.episodes"
        )
    return meta


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
        from imitation.data import types as imit_types

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
    from safeknob.training import build_ppo

    exp = rc.experiment
    make = absorbing_factory(exp.env)
    probe = make()
    horizon = env_horizon(probe)
    model = tabular_model(probe)
    noop = (
        0
        if isinstance(probe.action_space, gym.spaces.Discrete)
        else np.zeros(probe.action_space.shape or ())
    )
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
    venv = DummyVecEnv([make] * exp.ppo.n_envs)
    venv.seed(seed)
    gen = build_ppo(venv, exp.ppo, seed)
    # Start the generator at the expert (BC on its demonstrations): without it the safe
    # expert's generator never leaves the reckless route and AIRL never equilibrates.
    bc_warmstart(gen, trajs, obs_space, act_space, seed)
    net = make_reward_net(obs_space, act_space, exp.ppo.gamma)
    kwargs: dict[str, Any] = {
        "demonstrations": demos,
        "demo_batch_size": int(min(512, sum(len(t.acts) for t in demos))),
        "venv": venv,
        "gen_algo": gen,
        "reward_net": net,
        "n_disc_updates_per_round": 16,
        "disc_opt_kwargs": {"lr": 1e-3},
    }
    from safeknob.stages.common import tb_dir

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
        else:
            trainer = AbsorbingAIRL(center_entropy=term == "absorbing-centered", **kwargs)
        done = [0]

        def cb(_round: int) -> None:
            if progress is not None and task is not None:
                n = gen.num_timesteps
                progress.update(task, advance=n - done[0])
                done[0] = n

        # imitation draws its own tqdm bar per round; ours (rich) already shows progress.
        import functools
        from unittest import mock

        import tqdm

        quiet_tqdm = functools.partial(tqdm.tqdm, disable=True)
        with mock.patch("imitation.algorithms.adversarial.common.tqdm.tqdm", quiet_tqdm):
            trainer.train(steps, callback=cb)
    return net, {"horizon": horizon, "generator_term": term, "demos": len(trajs)}


GENERATOR_TERMS = ("auto", "transition", "absorbing", "absorbing-centered")


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


def bc_warmstart(
    gen: Any, trajs: list[TrajectoryWithRew], obs_space, act_space, seed: int, epochs: int = 20
) -> None:
    """Behavioural cloning of the demonstrations into the generator's policy, in place."""
    from imitation.algorithms import bc
    from imitation.data import rollout as imit_rollout

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
            batch_size=64,
            device="cpu",
            custom_logger=imit_logger.configure(logdir, format_strs=[]),
        )
        trainer.train(n_epochs=epochs, progress_bar=False)


def demos_warmstart(rc: RunConfig, seed: int, epochs: int = 5) -> Callable[[Any], None]:
    """A ``train_ppo(warmstart=...)`` hook: BC of both experts' demonstrations into the fresh
    PPO policy. From scratch, PPO on a learned reward stayed on one route whatever the
    multiplier (``budget --reward airl``) or never found the goal (``reward-mix``)."""

    def warmstart(model: Any) -> None:
        from safeknob.stages.collect_demos import load_role

        trajs = load_role(rc, "safe")[0] + load_role(rc, "reckless")[0]
        env = model.get_env()
        bc_warmstart(model, trajs, env.observation_space, env.action_space, seed, epochs)

    return warmstart


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


def load_reward(rc: RunConfig, role: str) -> tuple[BasicShapedRewardNet, dict[str, Any], gym.Space]:
    folder = rc.paths.rewards(role)
    meta = read_meta(folder, STAGE, FIX)
    env = make_env(rc.experiment.env.id, dict(rc.experiment.env.kwargs), rc.experiment.env.cost_fn)
    net = make_reward_net(env.observation_space, env.action_space, rc.experiment.ppo.gamma)
    try:
        net.load_state_dict(
            th.load(folder / "reward_net.pt", map_location="cpu", weights_only=True)
        )
        stats = json.loads((folder / "standardize.json").read_text())
    except Exception:  # noqa: BLE001
        raise ArtifactError(f"{folder} is corrupt; re-run `{FIX} --force`") from None
    net.eval()
    return net, {**meta, "standardize": stats}, env.observation_space


def learned_reward_fn(rc: RunConfig, role: str, checked: bool = True) -> Callable[..., np.ndarray]:
    """``reward_fn(obs, acts, next_obs, dones)`` for CostPenaltyVecEnv: the role's learned
    reward g(s'), standardized with the mean/std over the union of both demonstration sets.
    Raises ArtifactError naming ``safeknob learn-rewards`` when missing and
    :class:`RewardCheckError` when it failed its re-optimization check (unless ``checked`` is
    False: the check itself uses the reward before it has a verdict)."""
    if checked:
        require_usable(rc, role)
    net, meta, space = load_reward(rc, role)
    mu, sd = float(meta["standardize"]["mean"]), float(meta["standardize"]["std"])

    def fn(
        obs: np.ndarray, acts: np.ndarray, next_obs: np.ndarray, dones: np.ndarray
    ) -> np.ndarray:
        return (reward_of(net, next_obs, space) - mu) / sd

    return fn


def task_reward_fn(rc: RunConfig) -> Callable[..., np.ndarray]:
    """The task reward ``budget --reward airl`` maximizes: the mean of the two experts'
    standardized AIRL rewards when both exist, else the reckless expert's alone.

    Each expert's AIRL reward also encodes *where that expert goes* (it is high on its own
    path), so the reckless reward alone makes every safer route look far worse than its true
    return and the multiplier must grow beyond its cap before cost moves. Both experts chase
    the same task reward, so averaging their rewards keeps the task and cancels most of the
    route preference; the Lagrange multiplier then sets the trade-off with cost.
    """
    reck = learned_reward_fn(rc, "reckless")
    if not (rc.paths.rewards("safe") / "meta.json").is_file():
        return reck
    safe = learned_reward_fn(rc, "safe")

    def fn(
        obs: np.ndarray, acts: np.ndarray, next_obs: np.ndarray, dones: np.ndarray
    ) -> np.ndarray:
        return 0.5 * (reck(obs, acts, next_obs, dones) + safe(obs, acts, next_obs, dones))

    return fn


def standardization(
    net: BasicShapedRewardNet, trajs: list[TrajectoryWithRew], space: gym.Space
) -> dict[str, float]:
    """Mean and std of g(s') over every transition of the demonstrations given."""
    nxt = np.concatenate([np.asarray(t.obs)[1:] for t in trajs])
    r = reward_of(net, nxt, space)
    return {"mean": float(r.mean()), "std": float(max(r.std(), 1e-6)), "transitions": int(len(r))}


# ---------------------------------------------------------------------------- stage
def run(
    rc: RunConfig,
    roles: tuple[str, ...] = ("reckless",),
    steps: int | None = None,
    check_steps: int | None = None,
    workers: int = 2,
) -> Path:
    """Learn AIRL rewards for ``roles``, standardize them on the union of demonstrations and
    check them by re-optimizing with a fresh PPO; returns ``rewards/``.

    With ``workers >= 2`` and two or more roles to do, each role is learned in its own process
    (one torch thread each). Every role seeds all it draws from itself, so its reward is the
    same whatever the order, the other role, or the number of workers."""
    from safeknob.stages.collect_demos import load_role
    from safeknob.stages.common import console, progress_bar, up_to_date

    exp = rc.experiment
    steps = steps or exp.rewards.airl_steps
    check_steps = check_steps if check_steps is not None else exp.rewards.check_steps
    demos = {r: load_role(rc, r)[0] for r in ("safe", "reckless")}
    config = {**stage_config(exp, "env", "ppo", "demos", "rewards"), "steps": steps}
    todo = [
        r
        for r in roles
        if not up_to_date(rc.paths.rewards(r) / "meta.json", config, rc.force, FIX)
        or reward_status(rc, r) == "failed"  # a reward that failed the gate is never up to date
    ]
    if workers >= 2 and len(todo) >= 2:
        _run_parallel(rc, todo, steps, check_steps, config, workers)
    else:
        with progress_bar(rc.quiet) as progress:
            for role in todo:
                learn_role(rc, role, steps, check_steps, config, demos, progress)
    if not rc.quiet:
        print_checks(rc, roles, console)
    failed = [r for r in roles if reward_status(rc, r) == "failed"]
    if failed:
        why = "; ".join(
            f"{r}: "
            + (json.loads((rc.paths.rewards(r) / "meta.json").read_text()).get("check") or {}).get(
                "failure", "no verdict (its check did not finish)"
            )
            for r in failed
        )
        raise RewardCheckError(
            f"learned reward failed its re-optimization check (a fresh PPO on it does not "
            f"reproduce its expert) - {why}; no method will train on it: re-learn it with "
            f"more rewards.airl_steps or demos.episodes (`{FIX} --force`)"
        )
    unchecked = [r for r in roles if reward_status(rc, r) == "unchecked"]
    if unchecked and not rc.quiet:
        console.print(
            f"[yellow]learned rewards not checked (rewards.check_steps = 0): {', '.join(unchecked)}"
        )
    return rc.paths.root / "rewards"


def reward_status(rc: RunConfig, role: str) -> str:
    """ "passed", "failed", "unchecked" or "missing" for the role's learned reward."""
    try:
        return check_status(json.loads((rc.paths.rewards(role) / "meta.json").read_text()))
    except (OSError, json.JSONDecodeError):
        return "missing"


def learn_role(
    rc: RunConfig,
    role: str,
    steps: int,
    check_steps: int,
    config: dict[str, Any],
    demos: dict[str, list[TrajectoryWithRew]],
    progress=None,
) -> None:
    """One role's reward, in this process: AIRL, standardization, the folder (atomically),
    then the re-optimization check added to its meta.json."""
    exp = rc.experiment
    seed = exp.seed + 7
    task = progress.add_task(f"AIRL {role}", total=steps) if progress is not None else None
    t0 = time.perf_counter()
    net, facts = train_airl(rc, demos[role], steps, seed, role, progress, task)
    env = make_env(exp.env.id, dict(exp.env.kwargs), exp.env.cost_fn)
    stats = standardization(net, demos["safe"] + demos["reckless"], env.observation_space)
    seconds = time.perf_counter() - t0
    with atomic_dir(rc.paths.rewards(role)) as tmp:
        save_reward(tmp, net, stats)
        write_json(
            tmp / "meta.json",
            make_meta(
                STAGE,
                config,
                seed,
                inputs={"demos": rc.paths.demos(role)},
                wall_seconds=seconds,
                role=role,
                **facts,
            ),
        )
    # The folder is complete but has no verdict yet: until the check below writes one it
    # counts as failed (an interrupted check is redone, and no method uses the reward).
    if check_steps:
        # The expert's behaviour is its demonstrations (all a user with recordings has).
        evals = {r: demo_stats(demos[r]) for r in ("reckless", "safe")}
        check = reoptimize(rc, role, check_steps, progress, evals[role])
        failures = gate(check, exp.rewards, evals, role)
        check["passed"] = not failures
        if failures:
            check["failure"] = "PPO " + ", ".join(failures)
    else:
        check = {"skipped": True}
    meta = json.loads((rc.paths.rewards(role) / "meta.json").read_text())
    meta["check"] = check
    write_json(rc.paths.rewards(role) / "meta.json", meta)


# ---------------------------------------------------------------------------- parallel roles
_RELAY: Any = None
"""In a pool worker: the queue its progress goes to (set by :func:`_init_worker`)."""


class _ProgressRelay:
    """The part of rich's ``Progress`` that training calls, forwarded from a pool worker to
    the parent's progress bars through a queue."""

    def __init__(self, queue: Any, role: str) -> None:
        self.queue, self.role, self.n = queue, role, 0

    def add_task(self, description: str, total: float | None = None, **_: Any) -> str:
        self.n += 1
        key = f"{self.role}/{self.n}"
        self.queue.put(("add", key, description, total))
        return key

    def update(self, task: str, advance: float = 0, **_: Any) -> None:
        self.queue.put(("update", task, advance))


def _init_worker(parent_pid: int, queue: Any) -> None:
    from safeknob.training import die_with_parent

    global _RELAY
    die_with_parent(parent_pid)  # also one torch thread
    _RELAY = queue


def _one_role(rc: RunConfig, role: str, steps: int, check_steps: int, config: dict) -> str:
    """A pool job: one role's reward, progress relayed to the parent."""
    from safeknob.stages.collect_demos import load_role

    demos = {r: load_role(rc, r)[0] for r in ("safe", "reckless")}
    relay = _ProgressRelay(_RELAY, role) if _RELAY is not None else None
    learn_role(rc, role, steps, check_steps, config, demos, relay)
    return role


def _run_parallel(
    rc: RunConfig, todo: list[str], steps: int, check_steps: int, config: dict, workers: int
) -> None:
    """One role per job on a spawn process pool; each job writes only its own folder.

    A failing role lets the roles already running finish (their folders are complete), then
    its error is raised as it would be serially; Ctrl-C ends the workers at once (an
    unfinished folder is a temporary ``.tmp-*`` sibling that the next run removes)."""
    import dataclasses
    import multiprocessing as mp
    import os
    import queue as queue_mod
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
    from concurrent.futures.process import BrokenProcessPool

    from safeknob.stages.common import progress_bar
    from safeknob.training import abort_pool

    quiet_rc = dataclasses.replace(rc, quiet=True)
    n = min(workers, len(todo))
    ctx = mp.get_context("spawn")
    relay = ctx.Queue()
    with progress_bar(rc.quiet) as progress:
        overall = progress.add_task(f"learned rewards ({n} workers)", total=len(todo))
        tasks: dict[str, Any] = {}

        def drain() -> None:
            while True:
                try:
                    msg = relay.get_nowait()
                except queue_mod.Empty:
                    return
                if msg[0] == "add":
                    tasks[msg[1]] = progress.add_task(msg[2], total=msg[3])
                elif msg[1] in tasks:
                    progress.update(tasks[msg[1]], advance=msg[2])

        pool = ProcessPoolExecutor(
            n, mp_context=ctx, initializer=_init_worker, initargs=(os.getpid(), relay)
        )
        error: BaseException | None = None
        try:
            futures = [
                pool.submit(_one_role, quiet_rc, r, steps, check_steps, config) for r in todo
            ]
            pending = set(futures)
            while pending:
                done, pending = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
                drain()
                for fut in done:
                    if fut.cancelled():
                        continue
                    try:
                        fut.result()
                    except BrokenProcessPool:
                        raise ArtifactError(
                            "a learn-rewards worker process died (killed or out of memory); "
                            f"nothing half-written was kept. Re-run `{FIX}`"
                        ) from None
                    except Exception as exc:  # noqa: BLE001 - raised once the others end
                        error = error or exc
                        for f in pending:
                            f.cancel()  # not started yet: never start it
                        continue
                    progress.update(overall, advance=1)
            drain()
        except BaseException:  # Ctrl-C (or a dead worker): stop now
            abort_pool(pool, grace=3.0)
            raise
        pool.shutdown(wait=True)
        if error is not None:
            raise error


def reoptimize(
    rc: RunConfig, role: str, steps: int, progress, expert: dict[str, float]
) -> dict[str, Any]:
    """Train a fresh PPO on the learned reward (absorbing env) and measure it under the true
    reward and cost, next to ``expert`` (:func:`demo_stats` of its demonstrations); with a
    tabular model also the exact optimum of the learned reward (value iteration)."""
    from safeknob.lagrangian import CostPenaltyVecEnv
    from safeknob.metrics import bootstrap_ci
    from safeknob.rollout import PolicyAgent, rollout
    from safeknob.training import ProgressCallback, build_ppo, env_factory

    exp = rc.experiment
    fn = learned_reward_fn(rc, role, checked=False)
    venv = CostPenaltyVecEnv(
        DummyVecEnv([absorbing_factory(exp.env)] * exp.ppo.n_envs), reward_fn=fn
    )
    model = build_ppo(venv, exp.ppo, exp.seed + 11)
    task = progress.add_task(f"PPO on learned {role} reward", total=steps) if progress else None
    model.learn(steps, callback=ProgressCallback(progress, task))
    res = rollout(
        PolicyAgent(model, True),
        env_factory(exp.env),
        exp.eval.episodes,
        exp.eval.seed,
        record=True,
    )
    out: dict[str, Any] = {
        "ppo_steps": steps,
        "ppo_return": bootstrap_ci(res.returns, seed=0),
        "ppo_cost": bootstrap_ci(res.costs, seed=0),
        "ppo_terminal_rate": float(np.mean([e.terminal for e in res.episodes])),
        "episodes": int(len(res.returns)),
        "expert_return": expert["return_mean"],
        "expert_cost": expert["cost_mean"],
        "expert_terminal_rate": expert["terminal_rate"],
    }
    env = make_env(exp.env.id, dict(exp.env.kwargs), exp.env.cost_fn)
    model_t = tabular_model(env)
    if model_t is not None:
        from safeknob.envs.frontier import value_iteration
        from safeknob.envs.model import TabularModel, evaluate_policy

        net, _, space = load_reward(rc, role)
        g = reward_of(net, np.arange(model_t.n_states), space)
        learned = TabularModel(
            P=model_t.P,
            R=model_t.P @ g,
            C=model_t.C,
            mu=model_t.mu,
            horizon=model_t.horizon,
            terminal=model_t.terminal,
        )
        _, pi = value_iteration(learned)
        ret, cost = evaluate_policy(model_t, pi)
        out["exact_return"], out["exact_cost"] = ret, cost
    return out


def print_checks(rc: RunConfig, roles, console) -> None:
    from rich.table import Table

    t = Table(
        title="Learned rewards, re-optimized (true return and cost; expert: its demonstrations)"
    )
    for c in (
        "reward",
        "expert return",
        "expert cost",
        "PPO return",
        "PPO cost",
        "PPO terminal",
        "exact return",
        "exact cost",
        "gate",
    ):
        t.add_column(c, justify="right")
    for role in roles:
        p = rc.paths.rewards(role) / "meta.json"
        if not p.is_file():
            continue
        chk = json.loads(p.read_text()).get("check")
        if not chk or chk.get("skipped"):
            continue
        t.add_row(
            role, f"{chk['expert_return']:.3f}", f"{chk['expert_cost']:.2f}",
            f"{chk['ppo_return'][0]:.3f}", f"{chk['ppo_cost'][0]:.2f}",
            f"{chk.get('ppo_terminal_rate', float('nan')):.0%}",
            f"{chk.get('exact_return', float('nan')):.3f}", f"{chk.get('exact_cost', float('nan')):.2f}",
            "pass" if chk.get("passed") else "[red]FAIL",
        )  # fmt: skip
    console.print(t)
