"""Cost adapters: every env safeknob touches reports a float ``info["cost"]`` per step."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

import gymnasium as gym

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


class CostAdapter(gym.Wrapper):
    """Normalizes an env's step to the 5-tuple with a float ``info["cost"]``.

    Accepts envs whose ``step`` returns ``(obs, reward, cost, terminated, truncated, info)``
    (the 6-tuple convention) and envs that put ``cost`` in ``info``. With ``cost_fn`` (called
    as ``cost_fn(obs, action, next_obs, info) -> float``) the cost is computed and added.
    Raises :class:`MissingCostError` on the first step that carries no cost.
    """

    def __init__(self, env: gym.Env, cost_fn: Callable[..., float] | None = None) -> None:
        super().__init__(env)
        self.cost_fn = cost_fn
        self._last_obs: Any = None

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        self._last_obs = obs
        info = dict(info)
        info.setdefault("cost", 0.0)
        return obs, info

    def step(self, action):
        result = self.env.step(action)
        if len(result) == 6:
            obs, reward, cost, terminated, truncated, info = result
            info = dict(info)
            info["cost"] = cost
        elif len(result) == 5:
            obs, reward, terminated, truncated, info = result
            info = dict(info)
        else:
            raise MissingCostError(f"env.step returned a {len(result)}-tuple; expected 5 or 6")
        if self.cost_fn is not None:
            info["cost"] = self.cost_fn(self._last_obs, action, obs, info)
        if "cost" not in info:
            raise MissingCostError(
                f"env {self.env.spec.id if self.env.spec else self.env} does not report "
                "info['cost']; add a cost function: cost_fn = \"module:function\" in the "
                "experiment's [env] table"
            )
        info["cost"] = float(info["cost"])
        self._last_obs = obs
        return obs, float(reward), bool(terminated), bool(truncated), info
