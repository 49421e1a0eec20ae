"""Bullet-Safety-Gym (optional, ``make install-bullet``): seeding that gymnasium's
``reset(seed=...)`` does not do by itself.

Bullet-Safety-Gym 1.4.0's ``EnvironmentBuilder.reset(seed, options)`` ignores ``seed``: its
tasks draw the start state from the *global* ``numpy.random`` (``CircleTask.specific_reset``
places the agent with ``np.random.uniform``) and some obstacles from Python's ``random``.
So the same seed gave different episodes, and any other code touching the global RNGs
changed them. The PyBullet simulation itself is deterministic (DIRECT mode,
``deterministicOverlappingPairs=1``; measured: same start state and actions, same returns
and costs to the last digit, in a fresh or a reused env).

:class:`SeededGlobalRNG` gives each env its own ``numpy`` and ``random`` states, seeded by
``reset(seed=...)`` and swapped in around the env's ``reset`` (the global
states outside are left as they were), so the same seed gives the same numbers.

Only ``reset`` is wrapped: in 1.4.0 ``step`` draws no random numbers, and swapping the
states (~0.3 ms: ``np.random.get_state``/``set_state`` copy the Mersenne Twister state) on
every step made the env 2.6x slower. Not fixed here: obstacles with ``movement='circular'``
(not in SafetyBallCircle) move with ``time.time()``, the wall clock, and draw their phase from
the global RNG at construction; envs with such obstacles stay irreproducible.
"""

from __future__ import annotations

import random
from typing import Any

import gymnasium as gym
import numpy as np


def is_bullet_env(env: gym.Env) -> bool:
    """True for an env of the ``bullet_safety_gym`` package."""
    return type(env.unwrapped).__module__.startswith("bullet_safety_gym")


class SeededGlobalRNG(gym.Wrapper):
    """Runs the wrapped env's ``reset`` on its own global-RNG states.

    ``reset(seed=s)`` reseeds them from ``s``; without a seed they continue their stream
    (seeded from OS entropy until the first seeded reset, as gymnasium does).
    """

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self._np_state: Any = np.random.RandomState().get_state()
        self._py_state: Any = random.Random().getstate()

    def _seed(self, seed: int) -> None:
        ss = np.random.SeedSequence(seed)
        np_seed, py_seed = ss.generate_state(2, dtype=np.uint32)
        self._np_state = np.random.RandomState(int(np_seed)).get_state()
        self._py_state = random.Random(int(py_seed)).getstate()

    def _call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        outer_np, outer_py = np.random.get_state(), random.getstate()
        np.random.set_state(self._np_state)
        random.setstate(self._py_state)
        try:
            return fn(*args, **kwargs)
        finally:
            self._np_state, self._py_state = np.random.get_state(), random.getstate()
            np.random.set_state(outer_np)
            random.setstate(outer_py)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        # Only reset draws from the global RNGs in Bullet-Safety-Gym 1.4.0 (start states,
        # joint noise); its step does not (moving obstacles follow the wall clock, see the
        # module doc). Swapping the states costs ~0.3 ms, too much to do on every step.
        if seed is not None:
            self._seed(seed)
        return self._call(self.env.reset, seed=seed, options=options)
