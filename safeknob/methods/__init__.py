"""Blend methods, one module each behind the :class:`~safeknob.methods.base.Method` base;
each declares its facts once with :func:`~safeknob.methods.registry.register`.

Importing this package imports (and so registers) every method: a method that fails to
import is an ImportError here, not a missing entry.
"""

from __future__ import annotations

from safeknob.methods import bc_mix, budget, conditioned, mixture, reward_mix  # noqa: F401
from safeknob.methods.base import REWARD_SOURCES, BlendContext, Method
from safeknob.methods.loading import load_blend
from safeknob.methods.registry import (
    CAL,
    REGISTRY,
    check_specs,
    get_method,
    learned_rewards,
    method_of,
    parse_spec,
    spec_names,
)

__all__ = [
    "CAL",
    "REGISTRY",
    "REWARD_SOURCES",
    "BlendContext",
    "Method",
    "check_specs",
    "get_method",
    "learned_rewards",
    "load_blend",
    "method_of",
    "parse_spec",
    "spec_names",
]
