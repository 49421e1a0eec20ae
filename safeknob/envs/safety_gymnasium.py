"""Safety-Gymnasium (optional, ``make install-safety-gymnasium``) on Python 3.11 beside
gymnasium 0.29.1.

Use an id through this module, e.g. ``"safeknob.envs.safety_gymnasium:SafetyPointGoal1Gymnasium-v0"``
(``gymnasium.make`` imports the module, which imports Safety-Gymnasium, which registers every
``Safety*Gymnasium-v0`` id in gymnasium's registry). The ``...Gymnasium-v0`` ids are
Safety-Gymnasium's own Gymnasium-API versions of its tasks: ``step`` returns the 5-tuple
with the cost in ``info["cost"]``; safeknob's ``make_env`` adapts the inner env's 6-tuple
anyway.

Two compatibility measures, both confined to the first import of Safety-Gymnasium
(:func:`load`); nothing is patched before or after it:

1. **numpy-array dataclass defaults.** safety-gymnasium 1.0.0 (the last release; Ji et al.
   2023, "Safety-Gymnasium: A Unified Safe Reinforcement Learning Benchmark") declares numpy
   arrays as dataclass field defaults in its asset classes (``color: np.array =
   COLOR['hazard']`` in ``safety_gymnasium/assets/geoms/*.py`` and friends). Python 3.11's
   ``dataclasses`` refuses any unhashable default (``ValueError: mutable default <class
   'numpy.ndarray'> for field color is not allowed: use default_factory``); 3.10 only
   refused lists, dicts and sets, so ``import safety_gymnasium`` fails on 3.11. During the
   import, ``dataclasses.dataclass`` is replaced by a wrapper that, for classes defined in
   ``safety_gymnasium`` modules only, turns each numpy-array default into
   ``field(default_factory=...)`` returning a copy of that array, then calls the real
   decorator. Values are unchanged; each instance gets its own copy (on 3.10 all instances
   shared one array, which is what the error guards against).

2. **The multi-agent tasks' import.** ``safety_gymnasium/__init__.py`` imports its
   multi-agent module, which imports ``MultiAgentMujocoEnv`` from gymnasium-robotics 1.2.2
   (it pins ``numpy<1.24``) and uses it only when a multi-agent env is built. Installing
   gymnasium-robotics is worse than leaving it out: it registers itself as a gymnasium plugin,
   so *every* ``import gymnasium`` then imports it (about a second) and it prints a notice
   to stderr in every process. So ``make install-safety-gymnasium`` does not install it,
   and when it is absent the import sees a stand-in module whose ``MultiAgentMujocoEnv``
   raises ``ModuleNotFoundError`` when called. The single-agent ``Safety*Gymnasium-v0`` ids
   do not touch it; the stand-in is removed from ``sys.modules`` after the import.

Measured here (checked by ``tests/test_safety_gymnasium.py``): ``SafetyPointGoal1Gymnasium-v0``
has Box(60,) float64 observations, Box(-1, 1, (2,)) actions, 1000-step episodes, a float
``info["cost"]``, and the same seed gives the same episode. gymnasium's ``check_env`` warns
that its ``reset`` does not call ``super().reset(seed=...)``: it seeds its own generator.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import sys
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import numpy as np

PACKAGE = "safety_gymnasium"
INSTALL = "make install-safety-gymnasium"


def _array_defaults_as_factories(cls: type) -> None:
    """Replace numpy-array class-attribute defaults of annotated fields by default factories."""
    for name in cls.__dict__.get("__annotations__", {}):
        value = cls.__dict__.get(name)
        if isinstance(value, np.ndarray):
            setattr(cls, name, dataclasses.field(default_factory=value.copy))


@contextlib.contextmanager
def _array_defaults_allowed() -> Iterator[None]:
    """``dataclasses.dataclass`` accepting numpy-array defaults in ``safety_gymnasium``
    classes, for the duration (see the module doc)."""
    original = dataclasses.dataclass

    def dataclass(cls: Any = None, /, **kwargs: Any) -> Any:
        def wrap(c: type) -> type:
            if c.__module__.split(".")[0] == PACKAGE:
                _array_defaults_as_factories(c)
            return original(c, **kwargs)

        return wrap if cls is None else wrap(cls)

    dataclasses.dataclass = dataclass  # type: ignore[assignment]
    try:
        yield
    finally:
        dataclasses.dataclass = original


_MULTI_AGENT = "gymnasium_robotics.envs.multiagent_mujoco.mujoco_multi"


class _MultiAgentMujocoEnvUnavailable:
    """Stand-in for gymnasium-robotics' ``MultiAgentMujocoEnv`` (measure 2)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise ModuleNotFoundError(
            "Safety-Gymnasium's multi-agent tasks need gymnasium-robotics==1.2.2, which "
            "safeknob does not install (see safeknob.envs.safety_gymnasium)"
        )


@contextlib.contextmanager
def _multi_agent_stand_in() -> Iterator[None]:
    """Modules for ``from gymnasium_robotics...mujoco_multi import MultiAgentMujocoEnv``
    while gymnasium-robotics is not installed, for the duration (measure 2)."""
    if importlib.util.find_spec("gymnasium_robotics") is not None:
        yield
        return
    parts = _MULTI_AGENT.split(".")
    names = [".".join(parts[: i + 1]) for i in range(len(parts))]
    for name in names:
        mod = ModuleType(name)
        mod.__path__ = []  # a package, so the submodule import resolves
        sys.modules[name] = mod
    sys.modules[_MULTI_AGENT].MultiAgentMujocoEnv = _MultiAgentMujocoEnvUnavailable  # type: ignore[attr-defined]
    try:
        yield
    finally:
        for name in names:
            sys.modules.pop(name, None)


def load() -> ModuleType:
    """Import Safety-Gymnasium (registering its ids with gymnasium); returns the module.

    Raises:
        ModuleNotFoundError: it is not installed (the message names ``make
            install-safety-gymnasium``).
    """
    loaded = sys.modules.get(PACKAGE)
    if loaded is not None:
        return loaded
    try:
        with _array_defaults_allowed(), _multi_agent_stand_in():
            import safety_gymnasium
    except ModuleNotFoundError as exc:
        for mod in [m for m in sys.modules if m.split(".")[0] == PACKAGE]:
            del sys.modules[mod]  # a half-imported package must not look installed
        raise ModuleNotFoundError(
            f"Safety-Gymnasium is not usable ({exc}); run `{INSTALL}`", name=PACKAGE
        ) from None
    return safety_gymnasium


load()
