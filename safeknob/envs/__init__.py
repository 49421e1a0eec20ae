"""Cost-aware environments, their adapters and the exact-frontier solver.

Importing this package registers ``safeknob/HazardGrid-v0`` and ``safeknob/HazardNav-v0``.
"""

from __future__ import annotations

import difflib
import inspect
from typing import Any

import gymnasium as gym
from gymnasium.wrappers import TimeLimit

from safeknob.envs.bullet import SeededGlobalRNG, is_bullet_env
from safeknob.envs.model import TabularModel, evaluate_policy
from safeknob.envs.wrappers import (
    DEFAULT_STEP_CAP,
    CostAdapter,
    CostError,
    EnvStepError,
    MissingCostError,
    StepCap,
    check_cost_fn,
    load_callable,
)
from safeknob.errors import UserError

__all__ = [
    "TabularModel",
    "evaluate_policy",
    "tabular_model",
    "make_env",
    "EnvError",
    "MissingCostError",
    "CostError",
    "EnvStepError",
    "register_envs",
]

GRID_ID = "safeknob/HazardGrid-v0"
NAV_ID = "safeknob/HazardNav-v0"


class EnvError(UserError):
    """The env id or its arguments are not usable."""


def register_envs() -> None:
    """Register safeknob's built-in envs with Gymnasium (idempotent)."""
    if GRID_ID not in gym.registry:
        gym.register(id=GRID_ID, entry_point="safeknob.envs.hazard_grid:HazardGridEnv")
    if NAV_ID not in gym.registry:
        gym.register(id=NAV_ID, entry_point="safeknob.envs.hazard_nav:HazardNavEnv")


def _suggest(env_id: str) -> str:
    close = difflib.get_close_matches(env_id, list(gym.registry.keys()), n=3, cutoff=0.5)
    return f" (did you mean {', '.join(close)}?)" if close else ""


def make_env(
    env_id: str,
    kwargs: dict[str, Any] | None = None,
    cost_fn: str | None = None,
    render_mode: str | None = None,
) -> gym.Env:
    """Make a cost-aware env: ``info["cost"]`` is a float on every step.

    Args:
        env_id: any id ``gymnasium.make`` accepts, including ``"module:EnvId"``.
        kwargs: keyword arguments for the env constructor.
        cost_fn: optional ``"module:function"`` computing the cost of a transition.
        render_mode: passed to the env.

    Raises:
        EnvError: unknown id or bad arguments (one line, with close names when possible).
    """
    register_envs()
    extra: dict[str, Any] = dict(kwargs or {})
    if render_mode is not None:
        extra["render_mode"] = render_mode
    try:
        env = gym.make(env_id, disable_env_checker=True, **extra)
    except gym.error.Error as exc:
        raise EnvError(f"unknown env id {env_id!r}{_suggest(env_id)}: {exc}") from None
    except ModuleNotFoundError as exc:
        raise EnvError(f"cannot import the module of env {env_id!r}: {exc}") from None
    except (TypeError, ValueError) as exc:
        raise EnvError(f"env {env_id!r} rejected its arguments: {exc}") from None
    fn = None
    if cost_fn:
        try:
            fn = load_callable(cost_fn)
            check_cost_fn(fn, cost_fn)
        except ValueError as exc:
            raise EnvError(f"{exc} (the experiment's [env] cost_fn or --cost-fn)") from None
    # Adapt the innermost env (a 6-tuple step would break TimeLimit) and re-apply the limit.
    spec = env.spec
    base: gym.Env = env.unwrapped
    _check_env(base, env_id)
    if is_bullet_env(base):  # its reset ignores the seed (safeknob.envs.bullet)
        base = SeededGlobalRNG(base)
    adapted: gym.Env = CostAdapter(base, cost_fn=fn, cost_fn_name=cost_fn)
    if spec is not None and spec.max_episode_steps is not None:
        adapted = TimeLimit(adapted, max_episode_steps=spec.max_episode_steps)
    else:  # episodes that never end would hang every rollout
        adapted = StepCap(adapted, DEFAULT_STEP_CAP, env_id)
    return adapted


SUPPORTED_SPACES = (gym.spaces.Box, gym.spaces.Discrete)


def _check_env(env: gym.Env, env_id: str) -> None:
    """Raise EnvError for envs safeknob cannot drive: a ``reset`` without ``seed=`` (the old
    Gym API) or observation/action spaces other than Box and Discrete."""
    try:
        params = inspect.signature(env.reset).parameters
    except (TypeError, ValueError):  # no signature (a C extension): trust it
        params = None
    if (
        params is not None
        and "seed" not in params
        and not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    ):
        raise EnvError(
            f"env {env_id!r}: reset() takes no seed= (the old Gym API); port it to Gymnasium "
            "(reset(*, seed=None, options=None) -> (obs, info)) or wrap it with "
            "gymnasium.wrappers.EnvCompatibility"
        )
    for what, space in (("observation", env.observation_space), ("action", env.action_space)):
        if not isinstance(space, SUPPORTED_SPACES):
            raise EnvError(
                f"env {env_id!r} has a {type(space).__name__} {what} space; safeknob supports "
                "Box and Discrete spaces (flatten it, e.g. with "
                "gymnasium.wrappers.FlattenObservation, in the env's constructor)"
            )


def tabular_model(env: gym.Env) -> TabularModel | None:
    """The exact model of a tabular env (``P[s,a,s']``, ``R[s,a]``, ``C[s,a]``, start
    distribution, horizon), or None if the env does not expose one."""
    base = env.unwrapped
    fn = getattr(base, "tabular_model", None)
    return fn() if callable(fn) else None


register_envs()
