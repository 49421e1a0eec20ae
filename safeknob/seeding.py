"""Every seed safeknob uses, derived in one place from the experiment's seed.

An experiment has one root seed (``seed`` in its TOML) and a list of training seeds for its
blended agents (``[blend] seeds``, e.g. ``[0, 1, 2]``: replicate labels, the ``seed`` column
of ``results.csv``). Nothing is seeded with these numbers directly: each trained or sampled
thing gets its own stream,

    ``SeedSequence(entropy=root, spawn_key=(stage, role, method, alpha, seed))``

(``numpy.random.SeedSequence``; the text fields enter as CRC-32 codes, alpha as an integer
number of millionths, a missing alpha as ``2**32 - 1``), turned into one 31-bit integer for
the libraries that want an int (SB3's ``set_random_seed``, ``torch.manual_seed``, Gymnasium
resets). Different keys give statistically independent streams, so no two trained things
share a seed by accident (the safe expert and sweep seed 1 used to), and a stage's numbers
depend only on its own key: adding a seed or a method leaves the others' numbers unchanged.

The streams in use (``stage`` / ``role``):

=================  =================  ======================================================
stage              role               what it seeds
=================  =================  ======================================================
``experts``        ``reckless``       PPO of the reckless expert
``experts``        ``safe``           PPO-Lagrangian of the safe expert
``demos``          ``<role>``         the recorded demonstration episodes
``rewards``        ``<role>``         AIRL of a learned reward
``rewards``        ``check-<role>``   the PPO that re-optimizes a learned reward (and its BC)
``blend``          ``agent``          a blended agent's training (PPO / BC), per
                                      (method, alpha, seed); ``alpha`` is None for a method
                                      whose one policy serves every alpha (``conditioned``)
``blend``          ``permutation``    ``bc-mix``'s shuffle of the demonstrations (per method
                                      and seed, shared by its alphas so they are nested)
``blend``          ``candidates``     fresh episodes on which ``budget`` measures iterates
``blend``          ``warmstart``      BC warm start of a blended agent
=================  =================  ======================================================

Evaluation episodes are *not* derived per agent: every agent is measured on the same
episodes (``[eval] seed``, episode ``k`` with env seed ``seed + k``), common random numbers
that make agents comparable.
"""

from __future__ import annotations

import zlib

import numpy as np

NO_ALPHA = 2**32 - 1
"""Code of a stream that does not depend on alpha."""


def _code(text: str) -> int:
    return zlib.crc32(text.encode("utf-8"))


def _alpha_code(alpha: float | None) -> int:
    if alpha is None:
        return NO_ALPHA
    return int(round(float(alpha) * 1_000_000))


def sequence(
    root: int,
    stage: str,
    role: str = "",
    method: str = "",
    alpha: float | None = None,
    seed: int = 0,
) -> np.random.SeedSequence:
    """The ``SeedSequence`` of one stream (see the module docstring for the keys in use).

    Args:
        root: the experiment's seed (>= 0).
        stage: pipeline stage, e.g. ``"blend"``.
        role: what within the stage, e.g. ``"agent"``, ``"safe"``.
        method: blend method name (``"budget-env"``), or ``""``.
        alpha: knob value, or None for a stream shared by every alpha.
        seed: training seed (replicate label, >= 0).

    Raises:
        ValueError: a negative root or seed.
    """
    if int(root) < 0 or int(seed) < 0:
        raise ValueError(f"seeds must be >= 0, got root {root} and seed {seed}")
    key = (_code(stage), _code(role), _code(method), _alpha_code(alpha), int(seed))
    return np.random.SeedSequence(entropy=int(root), spawn_key=key)


def derive(
    root: int,
    stage: str,
    role: str = "",
    method: str = "",
    alpha: float | None = None,
    seed: int = 0,
) -> int:
    """One integer seed in ``[0, 2**31)`` for the stream of :func:`sequence` (what SB3,
    torch and Gymnasium take). Same arguments, same integer, on every machine."""
    state = sequence(root, stage, role, method, alpha, seed).generate_state(1, dtype=np.uint32)
    return int(state[0] >> 1)


def rng(
    root: int,
    stage: str,
    role: str = "",
    method: str = "",
    alpha: float | None = None,
    seed: int = 0,
) -> np.random.Generator:
    """A numpy ``Generator`` on the stream of :func:`sequence`."""
    return np.random.default_rng(sequence(root, stage, role, method, alpha, seed))


def folder_suffix(first_seed: int, seed: int) -> str:
    """Suffix of a blended agent's folder: ``""`` for the experiment's first training seed
    (``[blend] seeds[0]``), else ``"_seed-S"``: ``blends/<method>/alpha-0.50_seed-1/``. Not
    ``-seed-``: ``atomic_dir`` cleans ``.tmp-alpha-0.50-*``, which would match a concurrent
    job's ``.tmp-alpha-0.50-seed-1-*``."""
    return "" if int(seed) == int(first_seed) else f"_seed-{int(seed)}"
