"""The one place each blend method's facts are declared (``@register``), as omnisafe's
``algorithms/registry.py`` and imitation's ``util/registry.py`` do.

A method *spec* names a method and, where it takes several, its reward source:
``budget-env``, ``budget-airl``, ``bc-mix``; ``+cal`` appended trains it through its
calibration map (``bc-mix+cal``).
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable

from safeknob.errors import ConfigError, UserError
from safeknob.methods.base import REWARD_SOURCES, Method

CAL = "+cal"
"""Suffix of a spec trained through its calibration map (``bc-mix+cal``)."""

REGISTRY: dict[str, type[Method]] = {}
"""``--method`` name -> class, in registration order."""


def register(
    key: str,
    *,
    rewards: tuple[str, ...] = (),
    default_reward: str | None = None,
    bare_default: bool = False,
    needs_rewards: tuple[str, ...] = (),
    shared_policy: bool = False,
    trains: bool = True,
    calibratable: bool = True,
    cost: int = 1,
    summary: str = "",
) -> Callable[[type[Method]], type[Method]]:
    """Class decorator: declare a method's facts (see :class:`Method`) and register it."""

    def deco(cls: type[Method]) -> type[Method]:
        if key in REGISTRY:
            raise ValueError(f"method {key!r} is registered twice")
        bad = [r for r in rewards if r not in REWARD_SOURCES]
        if bad or (default_reward is not None and default_reward not in rewards):
            raise ValueError(f"method {key!r}: reward sources must come from {REWARD_SOURCES}")
        cls.key, cls.rewards, cls.needs_rewards = key, rewards, needs_rewards
        cls.default_reward = default_reward if default_reward else (rewards[0] if rewards else None)
        cls.bare_default = bare_default
        cls.shared_policy, cls.trains, cls.calibratable = shared_policy, trains, calibratable
        cls.cost, cls.summary = cost, summary
        REGISTRY[key] = cls
        return cls

    return deco


def get_method(name: str, reward: str | None = None) -> Method:
    """The method called ``name`` (``reward`` picks its reward source where it takes one).

    Raises UserError for an unknown method, an unknown reward source, or a reward source the
    method does not take."""
    cls = REGISTRY.get(name)
    if cls is None:
        close = difflib.get_close_matches(name, list(REGISTRY), n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise UserError(f"unknown method {name!r}{hint}; choose from {', '.join(REGISTRY)}")
    if reward is not None:
        if reward not in REWARD_SOURCES:
            raise UserError(
                f"unknown reward source {reward!r}; choose from {', '.join(REWARD_SOURCES)}"
            )
        if reward not in cls.rewards:
            what = (
                f"supports --reward {' or '.join(cls.rewards)}"
                if cls.rewards
                else "takes no --reward"
            )
            note = (
                f" ({name} on learned rewards is not implemented yet)"
                if cls.rewards and reward == "airl"
                else ""
            )
            raise UserError(f"method {name!r} {what}, got --reward {reward}{note}")
    return cls(reward)


def spec_names() -> list[str]:
    """Every method spec without ``+cal``: ``mixture, bc-mix, budget-env, budget-airl, ...``."""
    out: list[str] = []
    for key, cls in REGISTRY.items():
        out.extend([cls(r).name for r in cls.rewards] if cls.rewards else [key])
    return out


def parse_spec(spec: str) -> tuple[str, str | None]:
    """``"budget-env"`` -> ("budget", "env"); ``"conditioned-airl"`` -> ("conditioned",
    "airl"); ``"bc-mix"`` -> ("bc-mix", None);
    ``"budget"`` -> ("budget", None) (its default reward). ``+cal`` must be removed first."""
    if spec in REGISTRY:
        return spec, None
    for key, cls in REGISTRY.items():
        for r in cls.rewards:
            if spec == cls(r).name:
                return key, r
    return spec, None


def method_of(spec: str) -> Method:
    """The method a spec (``+cal`` allowed) trains; UserError when unknown."""
    return get_method(*parse_spec(spec.removesuffix(CAL)))


def check_specs(specs: Iterable[str], where: str = "blend.methods") -> None:
    """ConfigError (one line) for a spec that names no registered method and reward source,
    or ``+cal`` on a method that cannot be calibrated."""
    known = spec_names()
    for m in specs:
        base = m.removesuffix(CAL)
        cls = REGISTRY.get(parse_spec(base)[0])
        if base not in known or (m.endswith(CAL) and cls is not None and not cls.calibratable):
            raise ConfigError(
                f"{where}: unknown method {m!r}; choose from {', '.join(known)} "
                f"(append {CAL} to train through the method's calibration map, e.g. bc-mix{CAL})"
            )


def learned_rewards(specs: Iterable[str]) -> tuple[str, ...]:
    """The roles whose learned reward any of ``specs`` needs (``reckless``, ``safe``)."""
    roles = {r for s in specs for r in method_of(s).learned_rewards}
    return tuple(r for r in ("reckless", "safe") if r in roles)
