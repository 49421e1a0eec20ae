"""Deterministic, vectorized rollouts of agents in cost-aware envs.

Episode ``k`` of a rollout always uses env seed ``seed + k`` and its own agent RNG, whatever
the number of parallel envs, so the same seed gives the same numbers.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import gymnasium as gym
import numpy as np
import torch

from safeknob.envs.vec import core_for_factory


class Agent(Protocol):
    """Anything that acts in a batch of envs."""

    def start_episode(self, slot: int, rng: np.random.Generator) -> None:
        """Called when env ``slot`` begins a new episode."""

    def act(self, obs: np.ndarray, slots: np.ndarray) -> np.ndarray:
        """Actions for ``obs`` (shape (n,) + obs_shape) of envs ``slots`` (shape (n,))."""


class PolicyAgent:
    """A stable-baselines3 model (or anything with ``predict``) as an :class:`Agent`."""

    def __init__(self, model: Any, deterministic: bool = True) -> None:
        self.model = model
        self.deterministic = deterministic

    def start_episode(self, slot: int, rng: np.random.Generator) -> None:
        return None

    def act(self, obs: np.ndarray, slots: np.ndarray) -> np.ndarray:
        actions, _ = self.model.predict(obs, deterministic=self.deterministic)
        return np.asarray(actions)


class MixtureAgent:
    """Per-episode coin flip: episode runs ``agents[j]`` with probability ``probs[j]``."""

    def __init__(self, agents: Sequence[Agent], probs: Sequence[float]) -> None:
        self.agents = list(agents)
        p = np.asarray(probs, dtype=float)
        self.probs = p / p.sum()
        self.choice: dict[int, int] = {}

    def start_episode(self, slot: int, rng: np.random.Generator) -> None:
        j = int(rng.choice(len(self.agents), p=self.probs))
        self.choice[slot] = j
        self.agents[j].start_episode(slot, rng)

    def act(self, obs: np.ndarray, slots: np.ndarray) -> np.ndarray:
        out: np.ndarray | None = None
        which = np.array([self.choice[int(s)] for s in slots])
        for j, agent in enumerate(self.agents):
            idx = np.flatnonzero(which == j)
            if idx.size == 0:
                continue
            a = agent.act(obs[idx], slots[idx])
            if out is None:
                out = np.zeros((len(slots), *np.shape(a)[1:]), dtype=np.asarray(a).dtype)
            out[idx] = a
        assert out is not None
        return out


BATCHED_ENVS = 64
"""Copies a rollout steps at once when the env has a batched core (``safeknob.envs.vec``)."""


def _step(
    core: Any, envs: list[gym.Env], n_envs: int, active: np.ndarray, actions: Any
) -> list[tuple[Any, float, bool, bool, float]]:
    """Step the active slots: ``(obs, reward, terminated, truncated, cost)`` per active slot,
    from the batched core (all slots at once; idle ones get a dummy action) or one env each."""
    if core is not None:
        acts = np.asarray(actions)
        full = np.zeros((n_envs, *acts.shape[1:]), dtype=acts.dtype)
        full[active] = acts
        o, r, te, tr, c = core.step(full)
        return [(o[i], float(r[i]), bool(te[i]), bool(tr[i]), float(c[i])) for i in active]
    out = []
    for j, i in enumerate(active):
        obs, r, term, trunc, info = envs[int(i)].step(actions[j])
        out.append((obs, r, bool(term), bool(trunc), float(info["cost"])))
    return out


@dataclass
class Episode:
    """One recorded episode. ``obs`` has shape (T + 1,) + obs_shape, ``acts`` (T,) +
    act_shape, ``rews`` and ``costs`` (T,); ``terminal`` is True if the episode ended in a
    terminal state (not a time-out)."""

    obs: np.ndarray
    acts: np.ndarray
    rews: np.ndarray
    costs: np.ndarray
    terminal: bool


@dataclass
class Rollouts:
    """Per-episode results of a rollout, each of shape (episodes,)."""

    returns: np.ndarray
    costs: np.ndarray
    lengths: np.ndarray
    episodes: list[Episode] = field(default_factory=list)


def rollout(
    agent: Agent,
    make_env: Callable[[], gym.Env],
    episodes: int,
    seed: int,
    n_envs: int = 8,
    record: bool = False,
    progress: Callable[[int], None] | None = None,
) -> Rollouts:
    """Run ``episodes`` episodes of ``agent``; episode k is seeded with ``seed + k``.

    Args:
        agent: the acting agent.
        make_env: constructor of one cost-aware env.
        episodes: number of episodes.
        seed: base seed (env seeds and the agent's per-episode RNGs derive from it).
        n_envs: envs stepped in lockstep (a batch for the policy).
        record: keep every episode's observations, actions, rewards and costs.
        progress: called with the number of newly finished episodes.
    """
    torch.manual_seed(seed)
    # A built-in env steps all copies at once (safeknob.envs.vec), so a wide batch is cheap:
    # the policy is queried once for all of them. Episode k still uses env seed seed + k.
    core = core_for_factory(make_env, max(1, min(max(n_envs, BATCHED_ENVS), episodes)))
    n_envs = core.n if core is not None else max(1, min(n_envs, episodes))
    envs = [make_env() for _ in range(n_envs)] if core is None else []
    rets = np.zeros(episodes)
    costs = np.zeros(episodes)
    lens = np.zeros(episodes, dtype=np.int64)
    recorded: list[Episode | None] = [None] * episodes
    next_ep = 0
    ep_of = np.full(n_envs, -1)
    obs_now: list[Any] = [None] * n_envs
    buf: list[dict[str, list[Any]]] = [{} for _ in range(n_envs)]

    def start(i: int) -> None:
        nonlocal next_ep
        if next_ep >= episodes:
            ep_of[i] = -1
            return
        k = next_ep
        next_ep += 1
        ep_of[i] = k
        if core is not None:
            obs = core.reset_slot(i, seed + k)
        else:
            obs, _ = envs[i].reset(seed=seed + k)
        obs_now[i] = obs
        agent.start_episode(i, np.random.default_rng([seed, k]))
        if record:
            buf[i] = {"obs": [obs], "acts": [], "rews": [], "costs": []}

    def finish(i: int, k: int, term: bool) -> None:
        if record:
            b = buf[i]
            recorded[k] = Episode(
                obs=np.asarray(b["obs"]),
                acts=np.asarray(b["acts"]),
                rews=np.asarray(b["rews"], dtype=float),
                costs=np.asarray(b["costs"], dtype=float),
                terminal=bool(term),
            )
        if progress is not None:
            progress(1)
        start(i)

    for i in range(n_envs):
        start(i)
    while (ep_of >= 0).any():
        active = np.flatnonzero(ep_of >= 0)
        batch = np.stack([np.asarray(obs_now[i]) for i in active])
        actions = agent.act(batch, active)
        steps = _step(core, envs, n_envs, active, actions)
        for j, (i, (obs, r, term, trunc, c)) in enumerate(zip(active, steps, strict=True)):
            i = int(i)
            k = int(ep_of[i])
            rets[k] += r
            costs[k] += c
            lens[k] += 1
            obs_now[i] = obs
            if record:
                b = buf[i]
                b["obs"].append(obs)
                b["acts"].append(actions[j])
                b["rews"].append(r)
                b["costs"].append(c)
            if term or trunc:
                finish(i, k, term)
    for e in envs:
        e.close()
    eps = [e for e in recorded if e is not None] if record else []
    return Rollouts(returns=rets, costs=costs, lengths=lens, episodes=eps)
