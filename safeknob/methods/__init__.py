"""Blend methods, one module each behind the small :class:`~safeknob.methods.base.Method`
interface; :func:`get_method` looks one up by its ``--method`` name."""

from __future__ import annotations

from safeknob.errors import UserError
from safeknob.methods.base import BlendContext, Method

METHODS = ("mixture", "bc-mix", "reward-mix", "budget", "conditioned")
REWARDS = ("airl", "env")
SUPPORTED_REWARDS: dict[str, tuple[str, ...]] = {
    "mixture": (),
    "bc-mix": (),
    "reward-mix": ("airl",),
    "budget": ("airl", "env"),
    "conditioned": ("env",),
}
"""The ``--reward`` values each method implements (empty: it takes no reward; it blends
the experts' agents or demonstrations directly)."""


def get_method(name: str, reward: str | None = None) -> Method:
    """The method called ``name`` (``reward`` picks the reward source where it applies)."""
    if name not in METHODS:
        import difflib

        close = difflib.get_close_matches(name, METHODS, n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise UserError(f"unknown method {name!r}{hint}; choose from {', '.join(METHODS)}")
    if reward is not None and reward not in REWARDS:
        raise UserError(f"unknown reward source {reward!r}; choose from {', '.join(REWARDS)}")
    supported = SUPPORTED_REWARDS[name]
    if reward is not None and reward not in supported:
        what = f"supports --reward {' or '.join(supported)}" if supported else "takes no --reward"
        raise UserError(
            f"method {name!r} {what}, got --reward {reward}"
            + (
                " (conditioned on learned rewards is not implemented yet)"
                if name == "conditioned"
                else ""
            )
        )
    if name == "mixture":
        from safeknob.methods.mixture import MixtureMethod

        return MixtureMethod()
    available = _available()
    if name not in available:
        raise UserError(
            f"method {name!r} is not implemented in this version yet; available: "
            f"{', '.join(sorted(available))}"
        )
    return available[name](reward)


def _available() -> dict[str, type]:
    out: dict[str, type] = {}
    try:
        from safeknob.methods.budget import BudgetMethod

        out["budget"] = BudgetMethod
    except ImportError:
        pass
    try:
        from safeknob.methods.conditioned import ConditionedMethod

        out["conditioned"] = ConditionedMethod
    except ImportError:
        pass
    try:
        from safeknob.methods.reward_mix import RewardMixMethod

        out["reward-mix"] = RewardMixMethod
    except ImportError:
        pass
    try:
        from safeknob.methods.bc_mix import BCMixMethod

        out["bc-mix"] = BCMixMethod
    except ImportError:
        pass
    return out


__all__ = ["BlendContext", "Method", "METHODS", "REWARDS", "get_method"]
