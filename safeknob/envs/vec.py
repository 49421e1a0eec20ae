"""Batched numpy versions of the built-in envs: all copies step at once.

``HazardGrid`` and ``HazardNav`` are cheap numpy envs, so a list of single envs
(``DummyVecEnv``) spends most of its time in Python per-copy overhead (wrappers, info dicts,
one ``step`` call per copy). The cores here hold the state of ``n`` copies as arrays and
step them together.

Same numbers: each copy keeps its own ``numpy.random.Generator``, created exactly as
Gymnasium's ``reset(seed=s)`` creates ``np_random`` (``default_rng(s)``), and draws from it in
the same order as the single env. A batched env seeded like a ``DummyVecEnv`` (copy ``i`` with
``seed + i``) therefore produces the same episodes, bit for bit (``tests/test_vec.py``).

* :class:`GridCore`, :class:`NavCore`: the batched dynamics, with ``reset_slot(i, seed)`` so
  a rollout can give every episode its own seed (:func:`safeknob.rollout.rollout`).
* :class:`BatchedVecEnv`: a stable-baselines3 ``VecEnv`` over a core (auto-reset,
  ``terminal_observation`` and ``TimeLimit.truncated`` in ``infos`` as ``DummyVecEnv`` does).
* :func:`make_core`: the core for an env config, or None when the env has no batched version
  (any other id, or a user cost function): callers then fall back to single envs.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import numpy as np
from stable_baselines3.common.vec_env.base_vec_env import VecEnv

from safeknob.envs import make_env as _make_env
from safeknob.envs.hazard_grid import HazardGridEnv
from safeknob.envs.hazard_nav import ARENA, HazardNavEnv

GRID_ID = "safeknob/HazardGrid-v0"
NAV_ID = "safeknob/HazardNav-v0"


class _Core:
    """Shared bookkeeping: ``n`` copies, one Generator each, step counters."""

    env: Any
    extra_info: tuple[str, ...] = ()

    def __init__(self, n: int) -> None:
        if n < 1:
            raise ValueError(f"a batched env needs n >= 1 copies, got {n}")
        self.n = int(n)
        self.t = np.zeros(self.n, dtype=np.int64)
        self.rngs: list[np.random.Generator] = [np.random.default_rng() for _ in range(self.n)]

    @property
    def observation_space(self):
        return self.env.observation_space

    @property
    def action_space(self):
        return self.env.action_space

    def reseed(self, i: int, seed: int | None) -> None:
        """Gymnasium's ``reset(seed=seed)``: a fresh ``default_rng(seed)``; None keeps the
        copy's generator (only a copy never seeded draws fresh OS entropy, as Gymnasium does)."""
        if seed is not None:
            self.rngs[i] = np.random.default_rng(seed)


class GridCore(_Core):
    """``n`` copies of a :class:`~safeknob.envs.hazard_grid.HazardGridEnv`.

    ``step(actions)`` takes actions of shape (n,) and returns ``obs`` (n,) int64, ``reward``
    (n,) float64, ``terminated``, ``truncated`` (n,) bool and ``cost`` (n,) float64.
    """

    def __init__(self, env: HazardGridEnv, n: int) -> None:
        super().__init__(n)
        self.env = env
        self.state = np.full(self.n, env.start_state, dtype=np.int64)
        self.hazard_cost = env.hazard.astype(np.float64)

    def reset_slot(self, i: int, seed: int | None = None) -> Any:
        self.reseed(i, seed)
        self.state[i] = self.env.start_state
        self.t[i] = 0
        return int(self.env.start_state)

    def obs(self) -> np.ndarray:
        return self.state.copy()

    def step(self, actions: np.ndarray, live: np.ndarray | None = None):
        """Step the copies; with ``live`` (bool, shape (n,)) only those: the others keep
        their state and draw nothing, and get reward 0, cost 0, not done."""
        env = self.env
        a = np.asarray(actions).astype(np.int64).reshape(self.n)
        if env.slip > 0:
            # The single env's draws, in its order: u < slip, then the replacement action.
            for i, rng in enumerate(self.rngs):
                if (live is None or live[i]) and rng.random() < env.slip:
                    a[i] = rng.integers(4)
        s2 = env.next_state[self.state, a]
        if live is not None:
            s2 = np.where(live, s2, self.state)
        self.state = s2
        self.t += 1 if live is None else live
        term = s2 == env.goal_state
        # The single env's expression, so the rounding agrees: -step_penalty + goal_reward.
        reward = np.where(term, -env.step_penalty + env.goal_reward, -env.step_penalty + 0.0)
        cost = self.hazard_cost[s2]
        trunc = ~term & (self.t >= env.horizon)
        if live is not None:
            reward, cost = np.where(live, reward, 0.0), np.where(live, cost, 0.0)
            term, trunc = term & live, trunc & live
        return s2.copy(), reward, term, trunc, cost


class NavCore(_Core):
    """``n`` copies of a :class:`~safeknob.envs.hazard_nav.HazardNavEnv`.

    ``step(actions)`` takes actions of shape (n, 2) and returns ``obs`` (n, obs_dim) float32,
    ``reward`` (n,) float64, ``terminated``, ``truncated`` (n,) bool and ``cost`` (n,)
    float64. The arithmetic is the single env's, element-wise, so results agree bit for bit.
    """

    extra_info = ("goal_reached",)

    def __init__(self, env: HazardNavEnv, n: int) -> None:
        super().__init__(n)
        self.env = env
        self.pos = np.tile(np.asarray(env.start, dtype=np.float64), (self.n, 1))
        self.dist = np.full(self.n, env._goal_dist(*env.start))
        self.goal = np.asarray(env.goal, dtype=np.float64)

    def reset_slot(self, i: int, seed: int | None = None) -> np.ndarray:
        env = self.env
        self.reseed(i, seed)
        x, y = env.start
        if env.start_jitter > 0:
            jx, jy = self.rngs[i].uniform(-env.start_jitter, env.start_jitter, size=2)
            x, y = x + jx, y + jy
        x = min(max(float(x), -ARENA), ARENA)
        y = min(max(float(y), -ARENA), ARENA)
        self.pos[i] = (x, y)
        self.dist[i] = env._goal_dist(x, y)  # math.hypot, as the single env
        self.t[i] = 0
        return self._obs(self.pos[i : i + 1])[0]

    def _obs(self, pos: np.ndarray) -> np.ndarray:
        env = self.env
        # Rows of _obs_mat are (1, 0), (0, 1), (-1, 0), (0, -1): exact products, so this
        # equals the single env's matrix product bit for bit.
        return (pos @ env._obs_mat.T + env._obs_base).astype(np.float32)

    def obs(self) -> np.ndarray:
        return self._obs(self.pos)

    def step(self, actions: np.ndarray, live: np.ndarray | None = None):
        """Step the copies; with ``live`` (bool, shape (n,)) only those: the others keep
        their state and draw nothing, and get reward 0, cost 0, not done."""
        env = self.env
        a = np.clip(np.asarray(actions, dtype=np.float64).reshape(self.n, 2), -1.0, 1.0)
        if env.action_noise > 0:
            noise = np.zeros((self.n, 2))
            for i, rng in enumerate(self.rngs):
                if live is None or live[i]:
                    noise[i] = rng.normal(0.0, env.action_noise, size=2)
            a = np.clip(a + noise, -1.0, 1.0)
        ax, ay = a[:, 0], a[:, 1]
        norm2 = ax * ax + ay * ay
        over = norm2 > 1.0
        if over.any():
            inv = np.ones(self.n)
            inv[over] = 1.0 / np.sqrt(norm2[over])
            ax, ay = np.where(over, ax * inv, ax), np.where(over, ay * inv, ay)
        x = np.clip(self.pos[:, 0] + env.max_speed * ax, -ARENA, ARENA)
        y = np.clip(self.pos[:, 1] + env.max_speed * ay, -ARENA, ARENA)
        if live is not None:
            x, y = np.where(live, x, self.pos[:, 0]), np.where(live, y, self.pos[:, 1])
        self.pos = np.stack([x, y], axis=1)
        self.t += 1 if live is None else live
        cost = env.hazard_mask(x, y).astype(np.float64)
        gx, gy = env.goal
        dist = np.sqrt((x - gx) * (x - gx) + (y - gy) * (y - gy))
        reward = env.progress_coef * (self.dist - dist) - env.step_penalty
        self.dist = dist
        term = dist * dist <= env._goal_r2
        reward = np.where(term, reward + env.goal_reward, reward)
        trunc = ~term & (self.t >= env.horizon)
        if live is not None:
            reward, cost = np.where(live, reward, 0.0), np.where(live, cost, 0.0)
            term, trunc = term & live, trunc & live
        return self._obs(self.pos), reward, term, trunc, cost


class AbsorbingCore:
    """Batched :class:`safeknob.rewards.AbsorbingWrapper`: after a copy's inner episode
    terminates it stays in its last observation with reward 0 and cost 0 (drawing nothing)
    until ``horizon``; every episode lasts exactly ``horizon`` steps."""

    def __init__(self, inner: GridCore | NavCore, horizon: int) -> None:
        self.inner = inner
        self.env = inner.env
        self.n = inner.n
        self.horizon = int(horizon)
        self.t = np.zeros(self.n, dtype=np.int64)
        self.absorbed = np.zeros(self.n, dtype=bool)
        self.extra_info = ("absorbing",)

    @property
    def observation_space(self):
        return self.inner.observation_space

    @property
    def action_space(self):
        return self.inner.action_space

    def reset_slot(self, i: int, seed: int | None = None) -> Any:
        self.t[i] = 0
        self.absorbed[i] = False
        return self.inner.reset_slot(i, seed)

    def obs(self) -> np.ndarray:
        return self.inner.obs()

    def step(self, actions: np.ndarray):
        was = self.absorbed.copy()
        obs, reward, term, _trunc, cost = self.inner.step(actions, ~was)
        self.absorbed |= term
        self.t += 1
        done = np.zeros(self.n, dtype=bool)
        self.last_absorbing = was
        return obs, reward, done, self.t >= self.horizon, cost


def make_core(
    env_id: str, kwargs: dict[str, Any] | None, cost_fn: str | None, n: int
) -> GridCore | NavCore | None:
    """The batched core of a built-in env, or None (other ids, or a user cost function)."""
    if cost_fn:
        return None
    if env_id == GRID_ID:
        return GridCore(HazardGridEnv(**dict(kwargs or {})), n)
    if env_id == NAV_ID:
        return NavCore(HazardNavEnv(**dict(kwargs or {})), n)
    return None


class BatchedVecEnv(VecEnv):
    """A stable-baselines3 ``VecEnv`` over a batched core, behaving like a ``DummyVecEnv``
    of the same single envs: rewards as float32, a finished copy is reset at once and its last
    observation goes to ``infos[i]["terminal_observation"]``; ``seed(s)`` seeds copy ``i``
    with ``s + i`` at the next ``reset()``."""

    def __init__(self, core: GridCore | NavCore | AbsorbingCore) -> None:
        self.core = core
        super().__init__(core.n, core.observation_space, core.action_space)
        self._actions: np.ndarray | None = None

    def reset(self) -> np.ndarray:
        for i in range(self.num_envs):
            self.core.reset_slot(i, self._seeds[i])
        self._reset_seeds()
        self._reset_options()
        self.reset_infos = [{"cost": 0.0} for _ in range(self.num_envs)]
        return self.core.obs()

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = actions

    def step_wait(self):
        assert self._actions is not None
        obs, reward, term, trunc, cost = self.core.step(self._actions)
        done = term | trunc
        extra = self.core.extra_info
        absorbing = getattr(self.core, "last_absorbing", None)
        infos: list[dict[str, Any]] = []
        for i in range(self.num_envs):
            info: dict[str, Any] = {"cost": float(cost[i])}
            if absorbing is not None:
                if absorbing[i]:
                    info["absorbing"] = True
            elif extra:
                info["goal_reached"] = bool(term[i])
            info["TimeLimit.truncated"] = bool(trunc[i] and not term[i])
            infos.append(info)
        if done.any():
            obs = obs.copy()
            for i in np.flatnonzero(done):
                infos[i]["terminal_observation"] = obs[i].copy() if obs.ndim > 1 else obs[i]
                obs[i] = self.core.reset_slot(int(i))
                self.reset_infos[i] = {"cost": 0.0}
        return obs, reward.astype(np.float32), done, infos

    def close(self) -> None:
        return None

    def get_attr(self, attr_name: str, indices: Any = None) -> list[Any]:
        return [getattr(self.core.env, attr_name) for _ in self._indices(indices)]

    def set_attr(self, attr_name: str, value: Any, indices: Any = None) -> None:
        raise AttributeError(f"BatchedVecEnv cannot set {attr_name!r} on its copies")

    def env_method(self, method_name: str, *args: Any, indices: Any = None, **kwargs: Any):
        return [
            getattr(self.core.env, method_name)(*args, **kwargs) for _ in self._indices(indices)
        ]

    def env_is_wrapped(self, wrapper_class: Any, indices: Any = None) -> list[bool]:
        return [False for _ in self._indices(indices)]

    def _indices(self, indices: Any) -> Sequence[int]:
        if indices is None:
            return range(self.num_envs)
        if isinstance(indices, int):
            return [indices]
        return list(indices)


def batched_vec_env(env_id: str, kwargs: dict[str, Any] | None, cost_fn: str | None, n: int):
    """A :class:`BatchedVecEnv` of ``n`` copies, or None if the env has no batched core."""
    core = make_core(env_id, kwargs, cost_fn, n)
    return None if core is None else BatchedVecEnv(core)


def core_for_factory(make_env: Any, n: int) -> GridCore | NavCore | AbsorbingCore | None:
    """The batched core behind an env constructor: one made by
    :func:`safeknob.training.env_factory` (a ``functools.partial`` of
    :func:`safeknob.envs.make_env`) or one carrying a ``batched(n)`` attribute (the absorbing
    envs of ``safeknob.rewards``); None for any other constructor or a render mode."""
    batched = getattr(make_env, "batched", None)
    if callable(batched):
        return batched(n)
    if not isinstance(make_env, functools.partial) or make_env.func is not _make_env:
        return None
    args = list(make_env.args) + [None] * 4
    env_id, kwargs, cost_fn, render_mode = args[:4]
    kw = make_env.keywords or {}
    env_id = kw.get("env_id", env_id)
    kwargs = kw.get("kwargs", kwargs)
    cost_fn = kw.get("cost_fn", cost_fn)
    render_mode = kw.get("render_mode", render_mode)
    if render_mode is not None or not isinstance(env_id, str):
        return None
    return make_core(env_id, kwargs, cost_fn, n)


def vec_env(make_env: Any, n: int) -> VecEnv:
    """``n`` copies of the env ``make_env`` constructs: a :class:`BatchedVecEnv` when it has a
    batched core (:func:`core_for_factory`), else a ``DummyVecEnv``."""
    from stable_baselines3.common.vec_env import DummyVecEnv

    core = core_for_factory(make_env, n)
    return BatchedVecEnv(core) if core is not None else DummyVecEnv([make_env] * n)
