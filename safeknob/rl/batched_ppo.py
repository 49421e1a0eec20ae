"""K independent PPO / PID PPO-Lagrangian agents trained in lockstep as one computation.

Each agent is exactly what :func:`safeknob.rl.training.train_ppo` trains (stable-baselines3
2.2.1 ``PPO`` with ``MlpPolicy``, the penalized reward of
:class:`~safeknob.rl.lagrangian.CostPenaltyVecEnv`, the multiplier of
:class:`~safeknob.rl.lagrangian.LagrangeCallback`), but the K agents share one batched
computation: their weights are stacked (hidden layers ``[2K, in, out]``, policy and value net
of agent ``k`` at ``2k`` and ``2k + 1``; heads ``[K, in, out]``), every layer is one
``torch.baddbmm`` for all agents, one foreach Adam (eps 1e-5, ``rl.training.ADAM_KWARGS``)
steps all stacked parameters, and the per-agent losses are summed (agent ``k``'s parameters
get only agent ``k``'s gradient). The env is one batched core
(:mod:`safeknob.envs.vec`) of ``K * n_envs`` copies, agent ``k`` owning copies
``k * n_envs ... (k + 1) * n_envs - 1``.

The math follows stable-baselines3 2.2.1 step by step:

* ``on_policy_algorithm.py`` ``collect_rollouts``: sample from the policy, clip Box actions to
  the action space for the env (the unclipped action is stored), bootstrap time-outs with
  ``reward += gamma * V(terminal_obs)``, GAE in SB3's own ``RolloutBuffer`` (used over the
  ``K * n_envs`` copies: its arithmetic is element-wise);
* ``ppo.py`` ``train``: per epoch one ``permutation`` of the agent's rollout, minibatches in
  that order, per-minibatch advantage normalization, clipped surrogate, value loss
  (``F.mse_loss``), entropy bonus, grad-norm clip at 0.5 per agent, Adam step;
* ``policies.py`` ``ActorCriticPolicy``: separate tanh MLPs for policy and value, SB3's
  orthogonal init (the weights are copied from a freshly built SB3 ``PPO`` per agent, so its
  init gains sqrt(2) / 0.01 / 1 and seeding are SB3's), ``Categorical`` for Discrete actions,
  diagonal Gaussian with a state-independent ``log_std`` for Box actions.

Random streams are per agent, each taken from SB3's global streams right after building (and
warm-starting) that agent's SB3 ``PPO`` with its seed: a ``torch.Generator`` for action
sampling (one draw call per agent and step, of the shape SB3 draws) and a
``numpy.random.RandomState`` for the minibatch permutations. An agent therefore sees the same
random numbers alone, inside a batch, or in SB3 (``tests/test_batched_ppo.py``); results agree
to float rounding (batched matmul kernels round differently from SB3's ``addmm``).

An agent whose loss becomes non-finite is stopped there: it is reported as an
:class:`AgentFailure`, its parameters and Adam state are zeroed so its slice stays finite, and
the other agents' numbers are unaffected (every operation is per agent).

Envs without a batched core (any other env id, a user cost function) keep SB3's own path
(:func:`safeknob.rl.training.train_ppo`); :func:`has_batched_core` tells them apart.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from stable_baselines3 import PPO
from stable_baselines3.common.buffers import RolloutBuffer
from torch.distributions import Categorical, Normal

from safeknob.config import LagrangeConfig, PPOConfig
from safeknob.envs.vec import BatchedVecEnv, core_for_factory
from safeknob.rl.lagrangian import CostPenaltyVecEnv, EpisodeStats
from safeknob.rl.multiplier import CostWindow, LagrangeMultiplier
from safeknob.rl.training import ADAM_KWARGS, TrainResult, build_ppo

RewardFn = Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray], np.ndarray]

VF_COEF = 0.5
"""SB3 2.2.1 PPO's default value-loss coefficient (``build_ppo`` keeps it)."""
MAX_GRAD_NORM = 0.5
"""SB3 2.2.1 PPO's default grad-norm clip (per agent here)."""


@dataclass(frozen=True)
class AgentSpec:
    """One agent of a batch: what :func:`~safeknob.rl.training.train_ppo` takes per agent.

    ``budget=None`` trains plain PPO on the (possibly learned) reward; otherwise PID
    PPO-Lagrangian under the episode-cost ``budget`` with ``lagrange``'s gains. ``reward_fn``
    maps (obs, actions, next_obs, dones) of the agent's ``n_envs`` copies to a reward that
    replaces the env's (a learned one). ``warmstart`` runs on the agent's fresh SB3 ``PPO``
    before training (BC), as in ``train_ppo``."""

    seed: int
    budget: float | None = None
    lagrange: LagrangeConfig | None = None
    two_sided: bool = False
    reward_fn: RewardFn | None = None
    warmstart: Callable[[PPO], None] | None = None


@dataclass(frozen=True)
class AgentFailure:
    """Agent ``agent`` of the batch stopped at rollout ``rollout`` (1-based) for ``reason``."""

    agent: int
    rollout: int
    reason: str


def has_batched_core(make_env: Any) -> bool:
    """True when the env constructor ``make_env`` (``rl.training.env_factory`` or
    ``rl.airl.absorbing_factory``) has a batched core :func:`train_batched` can step."""
    return core_for_factory(make_env, 1) is not None


# ---------------------------------------------------------------------------------------------
# The K agents' actor-critic networks, stacked
# ---------------------------------------------------------------------------------------------


class StackedActorCritic:
    """The SB3 ``ActorCriticPolicy`` (``MlpPolicy``, tanh) of K agents, weights stacked.

    Shapes: hidden layer ``j``: ``W[j]`` ``[2K, in_j, out_j]``, ``b[j]`` ``[2K, 1, out_j]``
    (row ``2k`` agent ``k``'s policy net, ``2k + 1`` its value net); action head ``[K, h, A]``
    (logits, or the Gaussian mean), value head ``[K, h, 1]``; ``log_std`` ``[K, 1, A]`` for Box
    actions. :meth:`view` maps an SB3 parameter name to agent ``k``'s slice in SB3's layout.

    Raises ``ValueError`` for policies other than SB3's default MLP actor-critic.
    """

    def __init__(self, policies: Sequence[Any]) -> None:
        first = policies[0]
        self.K = len(policies)
        self.obs_space = first.observation_space
        self.act_space = first.action_space
        self.discrete = isinstance(self.act_space, gym.spaces.Discrete)
        names = [n for n, _ in first.named_parameters()]
        pi = sorted({n.split(".")[2] for n in names if n.startswith("mlp_extractor.policy_net.")})
        self.n_hidden = len(pi)
        self.hidden_names = [int(i) for i in sorted(pi, key=int)]
        sd0 = first.state_dict()
        self.W: list[torch.Tensor] = []
        self.b: list[torch.Tensor] = []
        for i in self.hidden_names:
            out, inp = sd0[f"mlp_extractor.policy_net.{i}.weight"].shape
            self.W.append(torch.zeros(2 * self.K, inp, out))
            self.b.append(torch.zeros(2 * self.K, 1, out))
        a_out, a_in = sd0["action_net.weight"].shape
        self.Wa, self.ba = torch.zeros(self.K, a_in, a_out), torch.zeros(self.K, 1, a_out)
        self.Wv, self.bv = torch.zeros(self.K, a_in, 1), torch.zeros(self.K, 1, 1)
        self.log_std = torch.zeros(self.K, 1, a_out) if "log_std" in sd0 else None
        expected = set(self._slots(0))
        if set(sd0) != expected:
            raise ValueError(
                "the batched trainer needs SB3's default MlpPolicy; the policy has "
                f"{sorted(set(sd0) ^ expected)}"
            )
        for k, policy in enumerate(policies):
            self.load_agent(k, policy.state_dict())
        self.params = [*self.W, *self.b, self.Wa, self.ba, self.Wv, self.bv]
        if self.log_std is not None:
            self.params.append(self.log_std)
        for p in self.params:
            p.requires_grad_(True)

    # ---- agent k's slices in SB3's layout ----------------------------------------------------

    def _slots(self, k: int) -> dict[str, Callable[[torch.Tensor], torch.Tensor]]:
        """SB3 parameter name -> a function of the stacked tensor giving agent ``k``'s slice in
        SB3's shape (a view; Linear weights transposed to ``[out, in]``)."""
        out: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {}
        for net, row in (("policy_net", 2 * k), ("value_net", 2 * k + 1)):
            for i in self.hidden_names:
                out[f"mlp_extractor.{net}.{i}.weight"] = lambda t, r=row: t[r].T
                out[f"mlp_extractor.{net}.{i}.bias"] = lambda t, r=row: t[r, 0]
        for name in ("action_net", "value_net"):
            out[f"{name}.weight"] = lambda t: t[k].T
            out[f"{name}.bias"] = lambda t: t[k, 0]
        if getattr(self, "log_std", None) is not None:
            out["log_std"] = lambda t: t[k, 0]
        return out

    def tensor_of(self, name: str) -> torch.Tensor:
        """The stacked tensor holding SB3 parameter ``name``."""
        if name == "log_std":
            assert self.log_std is not None
            return self.log_std
        if name.startswith("mlp_extractor."):
            _, _, idx, kind = name.split(".")
            j = self.hidden_names.index(int(idx))
            return self.W[j] if kind == "weight" else self.b[j]
        head = {"action_net": (self.Wa, self.ba), "value_net": (self.Wv, self.bv)}
        w, b = head[name.split(".")[0]]
        return w if name.endswith("weight") else b

    def view(self, k: int, name: str, tensor: torch.Tensor | None = None) -> torch.Tensor:
        """Agent ``k``'s slice of SB3 parameter ``name`` in ``tensor`` (default: the
        parameter; any tensor shaped like it, such as its Adam state)."""
        return self._slots(k)[name](self.tensor_of(name) if tensor is None else tensor)

    @torch.no_grad()
    def load_agent(self, k: int, state: dict[str, torch.Tensor]) -> None:
        """Copy an SB3 policy ``state_dict`` into agent ``k``'s slices."""
        for name in self._slots(k):
            self.view(k, name).copy_(state[name])

    @torch.no_grad()
    def agent_state(self, k: int) -> dict[str, torch.Tensor]:
        """Agent ``k``'s weights as an SB3 policy ``state_dict`` (fresh contiguous copies)."""
        return {name: self.view(k, name).clone().contiguous() for name in self._slots(k)}

    # ---- forward -----------------------------------------------------------------------------

    def features(self, obs: torch.Tensor) -> torch.Tensor:
        """SB3's ``preprocess_obs`` + flatten: ``obs`` ``[K, B]`` state indices (Discrete) or
        ``[K, B, *shape]`` -> float ``[K, B, in]``."""
        if isinstance(self.obs_space, gym.spaces.Discrete):
            return F.one_hot(obs.long().reshape(obs.shape[0], -1), int(self.obs_space.n)).float()
        return obs.float().reshape(obs.shape[0], obs.shape[1], -1)

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Observations ``[K, B(, *shape)]`` -> (action-head output ``[K, B, A]``, values
        ``[K, B]``).

        With Discrete observations the first layer is an index lookup, ``W[idx] + b``: the
        one-hot product SB3 computes, without the multiplications by 0 (same values; its
        gradient sums the same terms in another order)."""
        K, B = obs.shape[0], obs.shape[1]
        layers = list(zip(self.W, self.b, strict=True))
        if isinstance(self.obs_space, gym.spaces.Discrete) and layers:
            idx = obs.long().reshape(K, B).repeat_interleave(2, dim=0)
            (W0, b0), layers = layers[0], layers[1:]
            h = torch.tanh(W0[torch.arange(2 * K)[:, None], idx] + b0)
        else:
            x = self.features(obs)
            h = x.unsqueeze(1).expand(K, 2, B, x.shape[2]).reshape(2 * K, B, x.shape[2])
        for W, b in layers:
            h = torch.tanh(torch.baddbmm(b, h, W))
        h = h.view(K, 2, B, h.shape[-1])
        out = torch.baddbmm(self.ba, h[:, 0], self.Wa)
        values = torch.baddbmm(self.bv, h[:, 1], self.Wv)
        return out, values.squeeze(-1)

    def distribution(self, out: torch.Tensor) -> Categorical | Normal:
        """SB3's action distribution from the action head: ``Categorical(logits=out)``, or
        ``Normal(out, ones_like(out) * exp(log_std))`` (dimensions summed by the caller)."""
        if self.discrete:
            return Categorical(logits=out)
        assert self.log_std is not None
        return Normal(out, torch.ones_like(out) * self.log_std.exp())

    def evaluate(
        self, obs: torch.Tensor, actions: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """SB3's ``evaluate_actions``: (values, log_prob, entropy), each ``[K, B]``."""
        out, values = self.forward(obs)
        dist = self.distribution(out)
        if self.discrete:
            return values, dist.log_prob(actions), dist.entropy()
        return values, dist.log_prob(actions).sum(-1), dist.entropy().sum(-1)


# ---------------------------------------------------------------------------------------------
# One agent's bookkeeping (the env wrapper's episode sums, the callbacks' state)
# ---------------------------------------------------------------------------------------------


class _Agent:
    def __init__(self, spec: AgentSpec, model: PPO, total_steps: int, snapshot_fraction: float):
        self.spec = spec
        self.model = model
        self.stats = EpisodeStats()
        self.multiplier: LagrangeMultiplier | None = None
        self.window: CostWindow | None = None
        if spec.budget is not None:
            if spec.lagrange is None:
                raise ValueError("an agent with a cost budget needs its LagrangeConfig")
            self.multiplier = LagrangeMultiplier(spec.budget, spec.lagrange, spec.two_sided)
            self.window = CostWindow(spec.lagrange.cost_window)
        self.lam = 0.0  # the value CostPenaltyVecEnv.lam holds
        self.history: list[dict[str, float]] = []
        self.seen = 0  # episodes already handed to the multiplier
        self.snap_seen = 0
        self.snap_start = int(total_steps * (1 - snapshot_fraction))
        self.snap_on = snapshot_fraction > 0
        self.snapshots: list[dict[str, torch.Tensor]] = []
        self.points: list[tuple[float, float, int]] = []
        # SB3's global streams right after this agent's PPO was built and warm-started
        self.torch_gen = torch.Generator()
        self.torch_gen.set_state(torch.get_rng_state())
        self.np_rng = np.random.RandomState()
        self.np_rng.set_state(np.random.get_state())
        self.failure: AgentFailure | None = None

    def rollout_end(self) -> None:
        """``LagrangeCallback._on_rollout_end``: window the new episodes' costs, step the
        multiplier, record the history."""
        if self.multiplier is None or self.window is None:
            return
        new_costs = self.stats.costs[self.seen :]
        new_rets = self.stats.returns[self.seen :]
        self.seen = len(self.stats.costs)
        mean_cost = self.window.add(new_costs)
        lam = self.multiplier.rollout_end(mean_cost)
        if mean_cost is None:
            return
        if not self.multiplier.holding:
            self.lam = lam
        self.history.append(
            {
                "lambda": float(self.lam),
                "cost": mean_cost,
                "return": float(np.mean(new_rets)) if new_rets else float("nan"),
            }
        )

    def snapshot(self, num_timesteps: int, state: Callable[[], dict[str, torch.Tensor]]) -> None:
        """``SnapshotCallback._on_rollout_end`` (every rollout from ``snap_start`` on)."""
        seen = len(self.stats.costs)
        if self.snap_on and num_timesteps >= self.snap_start:
            self.snapshots.append(state())
            objs = self.stats.objectives[self.snap_seen : seen]
            costs = self.stats.costs[self.snap_seen : seen]
            n = len(costs)
            self.points.append(
                (
                    float(np.mean(objs)) if n else float("nan"),
                    float(np.mean(costs)) if n else float("nan"),
                    n,
                )
            )
        self.snap_seen = seen


# ---------------------------------------------------------------------------------------------
# The trainer
# ---------------------------------------------------------------------------------------------


class BatchedPPO:
    """Trains the agents of ``specs`` in lockstep; :meth:`learn` returns their results.

    Args:
        make_env: env constructor with a batched core (:func:`has_batched_core`).
        ppo: the PPO settings every agent shares (``n_envs`` copies per agent).
        steps: env steps per agent (rounded up to whole rollouts, as SB3's ``learn``).
        specs: one :class:`AgentSpec` per agent (K >= 1).
        snapshot_fraction: keep each agent's policy weights at the end of every rollout over
            the last fraction of training (``rl.training.SnapshotCallback``).
        progress: called after every rollout with the env steps it took (all agents).

    Raises ``ValueError`` when the env has no batched core or ``specs`` is empty.
    """

    def __init__(
        self,
        make_env: Any,
        ppo: PPOConfig,
        steps: int,
        specs: Sequence[AgentSpec],
        snapshot_fraction: float = 0.0,
        progress: Callable[[int], None] | None = None,
    ) -> None:
        if not specs:
            raise ValueError("a batch needs at least one agent")
        torch.set_num_threads(1)
        self.K, self.n = len(specs), ppo.n_envs
        self.core = core_for_factory(make_env, self.K * self.n)
        if self.core is None:
            raise ValueError("this env has no batched core; train it with rl.training.train_ppo")
        self.ppo, self.steps, self.progress = ppo, int(steps), progress
        self.agents: list[_Agent] = []
        for spec in specs:
            template = BatchedVecEnv(core_for_factory(make_env, self.n))
            model = build_ppo(CostPenaltyVecEnv(template), ppo, spec.seed)
            if spec.warmstart is not None:
                spec.warmstart(model)
            self.agents.append(_Agent(spec, model, self.steps, snapshot_fraction))
        self.net = StackedActorCritic([a.model.policy for a in self.agents])
        self.optimizer = torch.optim.Adam(
            self.net.params, lr=ppo.learning_rate, eps=1e-5, **ADAM_KWARGS
        )
        space = self.net.act_space
        self.buffer = RolloutBuffer(
            ppo.n_steps,
            self.net.obs_space,
            space,
            device="cpu",
            gamma=ppo.gamma,
            gae_lambda=ppo.gae_lambda,
            n_envs=self.K * self.n,
        )
        self.low = getattr(space, "low", None)
        self.high = getattr(space, "high", None)
        self.num_timesteps = 0  # per agent
        self.rollouts = 0

    # ---- helpers ------------------------------------------------------------------------------

    def _per_agent(self, arr: np.ndarray) -> torch.Tensor:
        """``[K * n, ...]`` numpy -> ``[K, n, ...]`` tensor (obs for the network)."""
        return torch.as_tensor(arr).reshape(self.K, self.n, *arr.shape[1:])

    def _alive(self) -> list[int]:
        return [k for k, a in enumerate(self.agents) if a.failure is None]

    def _reset(self) -> np.ndarray:
        """SB3's first ``env.reset()``: copy ``i`` of agent ``k`` seeded ``seed_k + i``."""
        for k, a in enumerate(self.agents):
            for i in range(self.n):
                self.core.reset_slot(k * self.n + i, a.spec.seed + i)
        return np.asarray(self.core.obs())

    def _sample(self, out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Actions ``[K, n(, A)]`` and log-probs ``[K, n]``, each agent drawing from its own
        generator exactly what SB3's distribution draws for its ``n`` envs."""
        dist = self.net.distribution(out)
        if self.net.discrete:
            probs = dist.probs
            acts = torch.zeros(self.K, self.n, dtype=torch.int64)
            for k in self._alive():
                g = self.agents[k].torch_gen
                acts[k] = torch.multinomial(probs[k], 1, True, generator=g).T.reshape(self.n)
            return acts, dist.log_prob(acts)
        eps = torch.zeros_like(out)
        for k in self._alive():
            eps[k] = torch.empty(out.shape[1:], dtype=out.dtype).normal_(
                generator=self.agents[k].torch_gen
            )
        acts = dist.loc + eps * dist.scale  # Normal.rsample
        return acts, dist.log_prob(acts).sum(-1)

    # ---- collect_rollouts ------------------------------------------------------------------

    def _rewards(self, obs, actions, next_obs, rew32, cost, done) -> np.ndarray:
        """``CostPenaltyVecEnv.step_wait``'s reward and episode sums, per agent."""
        n = self.n
        lam = np.repeat([a.lam for a in self.agents], n)
        self._ret += rew32
        self._cost += cost
        base: np.ndarray = rew32
        shaped = ((rew32 - lam * cost) / (1.0 + np.abs(lam))).astype(np.float32)
        objective = rew32.astype(np.float64)
        for k, a in enumerate(self.agents):
            if a.spec.reward_fn is None:
                continue
            sl = slice(k * n, (k + 1) * n)
            base = a.spec.reward_fn(obs[sl], actions[sl], next_obs[sl], done[sl])
            objective[sl] = base
            shaped[sl] = ((base - lam[sl] * cost[sl]) / (1.0 + np.abs(lam[sl]))).astype(np.float32)
        self._obj += objective
        for i in np.flatnonzero(done):
            st = self.agents[i // n].stats
            st.returns.append(float(self._ret[i]))
            st.costs.append(float(self._cost[i]))
            st.objectives.append(float(self._obj[i]))
            st.env_index.append(int(i % n))
            self._ret[i] = self._cost[i] = self._obj[i] = 0.0
        return shaped

    def _step(self) -> None:
        """One step of every copy: SB3's loop body in ``collect_rollouts``."""
        with torch.no_grad():
            out, values = self.net.forward(self._per_agent(self._last_obs))
            actions_t, log_probs = self._sample(out)
        actions = actions_t.numpy().reshape(self.K * self.n, *actions_t.shape[2:])
        clipped = actions
        if not self.net.discrete:
            clipped = np.clip(actions, self.low, self.high)
        next_obs, reward, term, trunc, cost = self.core.step(clipped)
        done = term | trunc
        rew32 = reward.astype(np.float32)
        rewards = self._rewards(self._last_obs, clipped, next_obs, rew32, cost, done)
        new_obs = next_obs
        if done.any():
            new_obs = next_obs.copy()
            for i in np.flatnonzero(done):
                new_obs[i] = self.core.reset_slot(int(i))
        self.num_timesteps += self.n
        timeout = done & trunc & ~term  # BatchedVecEnv's TimeLimit.truncated
        if timeout.any():
            with torch.no_grad():
                _, term_values = self.net.forward(self._per_agent(next_obs))
            r = torch.from_numpy(rewards)
            idx = torch.from_numpy(np.flatnonzero(timeout))
            r[idx] += self.ppo.gamma * term_values.reshape(-1)[idx]
        if self.net.discrete:
            actions = actions.reshape(-1, 1)
        self.buffer.add(
            self._last_obs,
            actions,
            rewards,
            self._last_episode_starts,
            values.reshape(-1),
            log_probs.reshape(-1),
        )
        self._last_obs = new_obs
        self._last_episode_starts = done

    def _collect(self) -> None:
        self.buffer.reset()
        for _ in range(self.ppo.n_steps):
            self._step()
        with torch.no_grad():
            _, values = self.net.forward(self._per_agent(self._last_obs))
        self.buffer.compute_returns_and_advantage(values.reshape(-1), self._last_episode_starts)
        self.rollouts += 1
        for k in self._alive():
            a = self.agents[k]
            a.rollout_end()
            a.snapshot(self.num_timesteps, lambda k=k: self.net.agent_state(k))
        if self.progress is not None:
            self.progress(self.K * self.n * self.ppo.n_steps)

    # ---- train ----------------------------------------------------------------------------------

    def _rollout_tensors(self) -> dict[str, torch.Tensor]:
        """The buffer, flattened as SB3's ``get`` does, split per agent: ``[K, N, ...]`` with
        ``N = n_envs * n_steps`` in SB3's order (env-major)."""
        buf, K = self.buffer, self.K
        out = {}
        for name in ("observations", "actions", "log_probs", "advantages", "returns"):
            flat = buf.swap_and_flatten(getattr(buf, name))
            out[name] = torch.as_tensor(flat).reshape(K, -1, *flat.shape[1:])
        obs = out["observations"]
        if isinstance(self.net.obs_space, gym.spaces.Discrete):
            out["observations"] = obs.reshape(K, -1)
        acts = out["actions"]
        out["actions"] = acts.long().reshape(K, -1) if self.net.discrete else acts
        for name in ("log_probs", "advantages", "returns"):
            out[name] = out[name].reshape(K, -1)
        return out

    def _loss(self, data: dict[str, torch.Tensor], idx: torch.Tensor) -> torch.Tensor:
        """SB3 ``PPO.train``'s minibatch loss per agent, ``[K]``."""
        rows = torch.arange(self.K)[:, None]
        values, log_prob, entropy = self.net.evaluate(
            data["observations"][rows, idx], data["actions"][rows, idx]
        )
        adv = data["advantages"][rows, idx]
        if adv.shape[1] > 1:
            adv = (adv - adv.mean(1, keepdim=True)) / (adv.std(1, keepdim=True) + 1e-8)
        ratio = torch.exp(log_prob - data["log_probs"][rows, idx])
        clip = self.ppo.clip_range
        policy_loss = -torch.min(adv * ratio, adv * torch.clamp(ratio, 1 - clip, 1 + clip)).mean(1)
        value_loss = ((data["returns"][rows, idx] - values) ** 2).mean(1)  # F.mse_loss
        entropy_loss = -entropy.mean(1)
        return policy_loss + self.ppo.ent_coef * entropy_loss + VF_COEF * value_loss

    @torch.no_grad()
    def _clip_grads(self) -> None:
        """``clip_grad_norm_(params, 0.5)`` per agent: each agent's total 2-norm over its
        slices of every parameter."""
        K = self.K
        grads = [p.grad for p in self.net.params]
        norms = torch.stack(
            [torch.linalg.vector_norm(g.reshape(K, -1), 2, dim=1) for g in grads if g is not None]
        )
        total = torch.linalg.vector_norm(norms, 2, dim=0)
        coef = torch.clamp(MAX_GRAD_NORM / (total + 1e-6), max=1.0)
        for g in grads:
            if g is not None:  # hidden layers hold 2 rows (policy, value net) per agent
                c = coef.repeat_interleave(2) if g.shape[0] == 2 * K else coef
                g.mul_(c.view(-1, *[1] * (g.dim() - 1)))

    def _fail(self, k: int, reason: str) -> None:
        self.agents[k].failure = AgentFailure(k, self.rollouts, reason)

    @torch.no_grad()
    def _neutralize(self) -> None:
        """Zero the failed agents' parameters and Adam state (their slices stay finite)."""
        failed = [k for k, a in enumerate(self.agents) if a.failure is not None]
        if not failed:
            return
        for p in self.net.params:
            tensors = [p, *(v for v in self.optimizer.state.get(p, {}).values() if v.dim())]
            for t in tensors:  # contiguous, agent-major: one row of K per agent
                t.view(self.K, -1)[failed] = 0.0

    def _train(self) -> None:
        data = self._rollout_tensors()
        N, bs = data["advantages"].shape[1], self.ppo.batch_size
        for _ in range(self.ppo.n_epochs):
            perms = torch.from_numpy(np.stack([a.np_rng.permutation(N) for a in self.agents]))
            for start in range(0, N, bs):
                loss = self._loss(data, perms[:, start : start + bs])
                bad = ~torch.isfinite(loss.detach())
                for k in torch.nonzero(bad).flatten().tolist():
                    if self.agents[k].failure is None:
                        self._fail(
                            k,
                            f"non-finite loss {float(loss.detach()[k])} in update {self.rollouts}",
                        )
                self.optimizer.zero_grad()
                loss.sum().backward()
                self._clip_grads()
                self.optimizer.step()
                self._neutralize()
        self._check_finite()

    @torch.no_grad()
    def _check_finite(self) -> None:
        for p in self.net.params:
            ok = torch.isfinite(p.reshape(self.K, -1)).all(dim=1)
            for k in torch.nonzero(~ok).flatten().tolist():
                if self.agents[k].failure is None:
                    self._fail(k, f"non-finite weights after update {self.rollouts}")
        self._neutralize()

    # ---- learn -----------------------------------------------------------------------------------

    def learn(self) -> list[TrainResult | AgentFailure]:
        """SB3's ``learn(steps)`` for every agent: rollout, update, until each agent has taken
        ``steps`` env steps. Per agent: a :class:`~safeknob.rl.training.TrainResult` (its SB3
        ``PPO`` holding the trained weights and Adam state) or an :class:`AgentFailure`."""
        kn = self.K * self.n
        self._last_obs = self._reset()
        self._last_episode_starts = np.ones(kn, dtype=bool)
        self._ret, self._cost, self._obj = np.zeros(kn), np.zeros(kn), np.zeros(kn)
        while self.num_timesteps < self.steps and self._alive():
            self._collect()
            self._train()
        return [self._result(k) for k in range(self.K)]

    def _result(self, k: int) -> TrainResult | AgentFailure:
        a = self.agents[k]
        if a.failure is not None:
            return a.failure
        model = a.model
        model.policy.load_state_dict(self.net.agent_state(k))
        self._export_adam(k, model)
        model.num_timesteps = self.num_timesteps
        model._n_updates = self.rollouts * self.ppo.n_epochs
        return TrainResult(
            model=model,
            history=a.history,
            snapshots=a.snapshots,
            points=a.points,
            final_lambda=float(a.lam) if a.spec.budget is not None else None,
        )

    @torch.no_grad()
    def _export_adam(self, k: int, model: PPO) -> None:
        """Agent ``k``'s Adam state into its SB3 optimizer (same layout as ``policy.parameters``)."""
        opt = model.policy.optimizer
        sd = opt.state_dict()
        state = {}
        for i, (name, _) in enumerate(model.policy.named_parameters()):
            st = self.optimizer.state.get(self.net.tensor_of(name))
            if not st:
                return
            state[i] = {
                key: (v.clone() if v.dim() == 0 else self.net.view(k, name, v).clone().contiguous())
                for key, v in st.items()
            }
        sd["state"] = state
        opt.load_state_dict(sd)


def train_batched(
    make_env: Any,
    ppo: PPOConfig,
    steps: int,
    specs: Sequence[AgentSpec],
    snapshot_fraction: float = 0.0,
    progress: Callable[[int], None] | None = None,
) -> list[TrainResult | AgentFailure]:
    """Train the agents ``specs`` in one batched computation (:class:`BatchedPPO`); one
    result per agent, in order."""
    return BatchedPPO(make_env, ppo, steps, specs, snapshot_fraction, progress).learn()
