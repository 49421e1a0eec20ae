"""Cost adapters: every env safeknob touches reports a float ``info["cost"]`` per step."""

from __future__ import annotations

import importlib
import inspect
import math
import sys
from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np

from safeknob.errors import SafeknobError


class MissingCostError(SafeknobError, RuntimeError):
    """The env does not report ``info["cost"]`` and no cost function was given."""


def load_callable(spec: str) -> Callable[..., Any]:
    """Import ``"module:function"`` and return the function."""
    if ":" not in spec:
        raise ValueError(f"expected 'module:function', got {spec!r}")
    mod_name, fn_name = spec.split(":", 1)
    try:
        module = importlib.import_module(mod_name)
    except ImportError as exc:
        raise ValueError(f"cannot import module {mod_name!r} for {spec!r}: {exc}") from exc
    fn = getattr(module, fn_name, None)
    if not callable(fn):
        raise ValueError(f"{spec!r}: module {mod_name!r} has no function {fn_name!r}")
    return fn


class CostError(MissingCostError):
    """The env (or the cost function) reported a cost that is not one finite number >= 0."""


def check_cost_fn(fn: Callable[..., Any], spec: str) -> None:
    """Raise ValueError unless ``fn`` can be called as ``fn(obs, action, next_obs, info)``."""
    try:
        inspect.signature(fn).bind(None, None, None, None)
    except TypeError:
        raise ValueError(
            f"cost function {spec!r} must take (obs, action, next_obs, info); its signature "
            f"is {spec.split(':', 1)[-1]}{inspect.signature(fn)}"
        ) from None
    except ValueError:  # a builtin without a signature: checked on its first call
        pass


def as_cost(value: Any, source: str, step: int) -> float:
    """One step's cost as a float: a number or a one-element array (Safety-Gymnasium style).

    Raises:
        CostError: ``None``, a string, a vector, NaN, inf or a negative number, naming
            ``source`` (the env or the cost function) and the step of the episode.
    """
    fix = "costs must be one finite number >= 0 per step (README: Your own environment)"
    if isinstance(value, bool) or value is None or isinstance(value, str | bytes):
        raise CostError(f"{source} reported cost {value!r} at step {step} of an episode; {fix}")
    try:
        arr = np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        raise CostError(
            f"{source} reported cost {value!r} at step {step} of an episode; {fix}"
        ) from None
    if arr.size != 1:
        raise CostError(
            f"{source} reported a cost of shape {arr.shape} at step {step} of an episode; {fix}"
        )
    cost = float(arr.reshape(()))
    if not (math.isfinite(cost) and cost >= 0):
        raise CostError(f"{source} reported cost {cost!r} at step {step} of an episode; {fix}")
    return cost


class CostAdapter(gym.Wrapper):
    """Normalizes an env's step to the 5-tuple with a float ``info["cost"]``.

    Accepts envs whose ``step`` returns ``(obs, reward, cost, terminated, truncated, info)``
    (the 6-tuple convention) and envs that put ``cost`` in ``info``. With ``cost_fn`` (called
    as ``cost_fn(obs, action, next_obs, info) -> float``) the cost is computed and added.
    Every cost is checked (:func:`as_cost`: one finite number >= 0; a one-element array is
    accepted), and so is the reward (finite).

    Raises:
        MissingCostError: on the first step that carries no cost.
        CostError: a cost that is not one finite number >= 0.
        EnvStepError: a reset or step result of the wrong form (old Gym API) or a non-finite
            reward.
    """

    def __init__(
        self,
        env: gym.Env,
        cost_fn: Callable[..., float] | None = None,
        cost_fn_name: str | None = None,
    ) -> None:
        super().__init__(env)
        self.cost_fn = cost_fn
        self.cost_fn_name = cost_fn_name
        self._last_obs: Any = None
        self._t = 0

    @property
    def _name(self) -> str:
        return f"env {self.env.spec.id if self.env.spec else type(self.env.unwrapped).__name__}"

    def reset(self, **kwargs):
        result = self.env.reset(**kwargs)
        if not (isinstance(result, tuple) and len(result) == 2 and isinstance(result[1], dict)):
            raise EnvStepError(
                f"{self._name}: reset() must return (obs, info) (the Gymnasium API); it "
                "returned something else (old Gym API?); wrap it with "
                "gymnasium.wrappers.EnvCompatibility or port it to Gymnasium"
            )
        obs, info = result
        self._last_obs = obs
        self._t = 0
        info = dict(info)
        info.setdefault("cost", 0.0)
        return obs, info

    def step(self, action):
        result = self.env.step(action)
        self._t += 1
        if len(result) == 6:
            obs, reward, cost, terminated, truncated, info = result
            info = dict(info)
            info["cost"] = cost
        elif len(result) == 5:
            obs, reward, terminated, truncated, info = result
            info = dict(info)
        else:
            raise EnvStepError(
                f"{self._name}: step() returned a {len(result)}-tuple; expected (obs, reward, "
                "terminated, truncated, info) or (obs, reward, cost, terminated, truncated, "
                "info) (a 4-tuple is the old Gym API: port the env to Gymnasium)"
            )
        source = self._name
        if self.cost_fn is not None:
            source = f"cost function {self.cost_fn_name or self.cost_fn.__name__!r}"
            info["cost"] = self.cost_fn(self._last_obs, action, obs, info)
        if "cost" not in info:
            raise MissingCostError(
                f"{self._name} does not report info['cost']; add a cost function: "
                'cost_fn = "module:function" in the experiment\'s [env] table (or --cost-fn)'
            )
        info["cost"] = as_cost(info["cost"], source, self._t)
        try:
            reward = float(np.asarray(reward, dtype=float).reshape(()))
        except (TypeError, ValueError):
            raise EnvStepError(
                f"{self._name} returned reward {reward!r} at step {self._t}; expected one number"
            ) from None
        if not math.isfinite(reward):
            raise EnvStepError(f"{self._name} returned reward {reward} at step {self._t}")
        self._last_obs = obs
        return obs, reward, bool(terminated), bool(truncated), info


class EnvStepError(MissingCostError):
    """An env's reset or step returned something of the wrong form (e.g. the old Gym API)."""


DEFAULT_STEP_CAP = 1000
"""Per-episode step cap of envs registered without ``max_episode_steps``."""

_warned: set[str] = set()


class StepCap(gym.Wrapper):
    """Truncates episodes at ``max_steps`` for envs whose episodes might never end, and says
    so once per process on stderr when it happens (a TimeLimit that announces itself)."""

    def __init__(self, env: gym.Env, max_steps: int, env_id: str) -> None:
        super().__init__(env)
        self.max_steps = max_steps
        self.env_id = env_id
        self._t = 0

    def reset(self, **kwargs):
        self._t = 0
        return self.env.reset(**kwargs)

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self._t += 1
        if self._t >= self.max_steps and not (terminated or truncated):
            truncated = True
            info = {**info, "step_cap": True}
            if self.env_id not in _warned:
                _warned.add(self.env_id)
                print(
                    f"warning: an episode of env {self.env_id} ran {self.max_steps} steps "
                    "without ending; episodes are cut at that step cap (set [env] kwargs "
                    "max_episode_steps to change it)",
                    file=sys.stderr,
                )
        return obs, reward, terminated, truncated, info
