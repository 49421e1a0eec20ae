"""Offline safe-RL datasets in the DSRL/D4RL HDF5 layout, read as (and written from) safeknob
demonstrations.

The layout (one HDF5 file, flat datasets over all N transitions of all episodes, as in
D4RL, Fu et al. 2020, and DSRL, Liu et al. 2023, "Datasets and Benchmarks for Offline Safe
Reinforcement Learning"):

==================== ============ =====================================================
dataset              shape        meaning
==================== ============ =====================================================
``observations``     (N, *obs)    observation before step t
``next_observations`` (N, *obs)   observation after step t
``actions``          (N, *act)    action of step t
``rewards``          (N,)         reward of step t
``costs``            (N,)         cost of step t (DSRL's addition to D4RL)
``terminals``        (N,)         step t ended its episode in a terminal state
``timeouts``         (N,)         step t ended its episode by truncation (time limit)
==================== ============ =====================================================

Episodes are the runs between steps flagged in ``terminals`` or ``timeouts``; steps after
the last flag (a file cut mid-episode) form one more, truncated, episode. An episode's
observations are ``observations[start:end]`` followed by ``next_observations[end - 1]``.

Selecting demonstrations from such a mixture (:func:`select`), ``n`` episodes per role:

* ``reckless``: the ``n`` episodes of highest return;
* ``safe``: the ``n`` episodes of highest return among those whose episode cost (the
  undiscounted sum of step costs) is ``<= max_cost``.

Ties go to the episode that comes first in the file. Errors are one line
(:class:`~safeknob.artifacts.ArtifactError` for a bad file, :class:`~safeknob.errors.UserError`
for a budget no episode meets).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from imitation.data.types import TrajectoryWithRew

from safeknob import data
from safeknob.artifacts import ArtifactError
from safeknob.errors import UserError

KEYS = (
    "observations",
    "next_observations",
    "actions",
    "rewards",
    "costs",
    "terminals",
    "timeouts",
)
ROLES = ("reckless", "safe")
FIX = "write it in the DSRL/D4RL layout (README: Bring your own data)"


@dataclass(frozen=True)
class Dataset:
    """The flat arrays of a DSRL/D4RL file, keyed as in :data:`KEYS`, and its episodes as
    ``(start, end)`` index pairs (``end`` exclusive)."""

    path: Path
    arrays: dict[str, np.ndarray]
    bounds: list[tuple[int, int]]

    @property
    def returns(self) -> np.ndarray:
        """Undiscounted return per episode, shape (episodes,)."""
        return self._sums("rewards")

    @property
    def costs(self) -> np.ndarray:
        """Undiscounted cost per episode, shape (episodes,)."""
        return self._sums("costs")

    def _sums(self, key: str) -> np.ndarray:
        x = np.asarray(self.arrays[key], dtype=np.float64)
        return np.array([float(x[s:e].sum()) for s, e in self.bounds])

    def trajectory(self, i: int) -> TrajectoryWithRew:
        """Episode ``i`` as an imitation trajectory with ``infos[t]["cost"]`` (a float)."""
        s, e = self.bounds[i]
        a = self.arrays
        obs = np.concatenate([a["observations"][s:e], a["next_observations"][e - 1 : e]])
        return TrajectoryWithRew(
            obs=obs,
            acts=np.asarray(a["actions"][s:e]),
            infos=np.array([{"cost": float(c)} for c in a["costs"][s:e]], dtype=object),
            terminal=bool(a["terminals"][e - 1]),
            rews=np.asarray(a["rewards"][s:e], dtype=float),
        )


def read(path: Path | str) -> Dataset:
    """Read a DSRL/D4RL HDF5 file and split it into episodes.

    Raises:
        ArtifactError: the file is missing or not HDF5, a dataset of :data:`KEYS` is
            missing, the datasets' lengths differ, or the file holds no transition.
    """
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"no HDF5 file at {path}")
    try:
        with h5py.File(path, "r") as f:
            missing = [k for k in KEYS if k not in f or not isinstance(f[k], h5py.Dataset)]
            if missing:
                raise ArtifactError(
                    f"{path}: no {', '.join(repr(k) for k in missing)} dataset (the DSRL/D4RL "
                    f"layout needs {', '.join(KEYS)}); {FIX}"
                )
            arrays = {k: np.asarray(f[k][()]) for k in KEYS}
    except OSError as exc:
        raise ArtifactError(f"{path} is not a readable HDF5 file ({exc}); {FIX}") from None
    n = len(arrays["observations"])
    for k in KEYS:
        if arrays[k].ndim == 0 or len(arrays[k]) != n:
            got = "a scalar" if arrays[k].ndim == 0 else f"{len(arrays[k])} rows"
            raise ArtifactError(
                f"{path}: {k!r} has {got} but 'observations' has {n}; every dataset needs "
                "one row per transition"
            )
    for k in ("rewards", "costs", "terminals", "timeouts"):
        if arrays[k].ndim != 1:
            raise ArtifactError(
                f"{path}: {k!r} has shape {arrays[k].shape}, expected ({n},); {FIX}"
            )
    if n == 0:
        raise ArtifactError(f"{path} holds no transitions")
    for k in ("rewards", "costs"):
        if not np.all(np.isfinite(arrays[k].astype(np.float64))):
            raise ArtifactError(f"{path}: {k!r} holds NaN or infinite values")
    ends = np.flatnonzero(arrays["terminals"].astype(bool) | arrays["timeouts"].astype(bool))
    bounds, start = [], 0
    for e in ends:
        bounds.append((start, int(e) + 1))
        start = int(e) + 1
    if start < n:  # cut mid-episode: keep the rest as a truncated episode
        bounds.append((start, n))
    return Dataset(path, arrays, bounds)


def select(
    returns: np.ndarray, costs: np.ndarray, role: str, n: int, max_cost: float | None = None
) -> np.ndarray:
    """Indices of the episodes kept for ``role`` (see the module doc), best first.

    Args:
        returns, costs: per-episode return and cost, shape (episodes,).
        role: ``reckless`` or ``safe``.
        n: episodes wanted (fewer are returned when fewer qualify).
        max_cost: the safe role's budget on an episode's cost (required for ``safe``).

    Raises:
        UserError: unknown role, ``n < 1``, or no episode within ``max_cost``.
    """
    if role not in ROLES:
        raise UserError(f"--role must be one of {', '.join(ROLES)}, got {role!r}")
    if n < 1:
        raise UserError(f"--episodes must be >= 1, got {n}")
    idx = np.arange(len(returns))
    if role == "safe":
        if max_cost is None:
            raise UserError("the safe role needs a cost budget (--max-cost)")
        idx = idx[np.asarray(costs) <= max_cost]
        if len(idx) == 0:
            raise UserError(
                f"no episode has cost <= {max_cost:g} (the lowest episode cost is "
                f"{float(np.min(costs)):g}); raise --max-cost or use another dataset"
            )
    order = np.lexsort((idx, -np.asarray(returns)[idx]))  # highest return, then file order
    return idx[order][:n]


def rule(role: str, n: int, max_cost: float | None) -> str:
    """The selection rule in words, as recorded in the manifest."""
    if role == "reckless":
        return f"the {n} episodes of highest return (ties: file order)"
    return (
        f"the {n} episodes of highest return among those with episode cost <= {max_cost:g} "
        "(ties: file order)"
    )


def load_selected(
    path: Path | str, role: str, n: int, max_cost: float | None
) -> tuple[list[TrajectoryWithRew], dict[str, Any]]:
    """Read ``path`` and pick ``role``'s demonstrations; returns the trajectories and the
    selection record for the manifest (rule, budget, and index/return/cost of every kept and
    dropped episode)."""
    ds = read(path)
    rets, costs = ds.returns, ds.costs
    kept = select(rets, costs, role, n, max_cost)
    dropped = np.setdiff1d(np.arange(len(rets)), kept)

    def listing(ix: np.ndarray) -> dict[str, list[Any]]:
        return {
            "index": [int(i) for i in ix],
            "return": [float(rets[i]) for i in ix],
            "cost": [float(costs[i]) for i in ix],
        }

    record = {
        "rule": rule(role, n, max_cost),
        "role": role,
        "max_cost": max_cost if role == "safe" else None,
        "episodes_requested": n,
        "episodes_in_file": len(rets),
        "eligible": int(np.sum(costs <= max_cost)) if role == "safe" else len(rets),
        "kept": listing(kept),
        "dropped": listing(dropped),
    }
    return [ds.trajectory(int(i)) for i in kept], record


def write(
    path: Path | str, trajs: Sequence[TrajectoryWithRew], attrs: dict[str, Any] | None = None
) -> Path:
    """Write trajectories (with ``infos[t]["cost"]``) to ``path`` in the DSRL/D4RL layout,
    atomically (a temporary file renamed into place). ``attrs`` go in the file's attributes,
    JSON-encoded when not a string. Returns ``path``."""
    path = Path(path)
    if not data.has_costs(trajs):
        raise ArtifactError("these demonstrations have no per-step cost in their infos")
    obs = [np.asarray(t.obs) for t in trajs]
    arrays = {
        "observations": np.concatenate([o[:-1] for o in obs]),
        "next_observations": np.concatenate([o[1:] for o in obs]),
        "actions": np.concatenate([np.asarray(t.acts) for t in trajs]),
        "rewards": np.concatenate([np.asarray(t.rews, dtype=np.float64) for t in trajs]),
        "costs": np.concatenate([data.costs(t) for t in trajs]),
    }
    terminals, timeouts = [], []
    for t in trajs:
        end = np.zeros(len(t.acts), dtype=bool)
        term = end.copy()
        (term if t.terminal else end)[-1] = True
        terminals.append(term)
        timeouts.append(end)
    arrays["terminals"] = np.concatenate(terminals)
    arrays["timeouts"] = np.concatenate(timeouts)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".tmp-{path.name}-")
    os.close(fd)
    try:
        with h5py.File(tmp, "w") as f:
            for k in KEYS:
                f.create_dataset(k, data=arrays[k], compression="gzip", compression_opts=4)
            for k, v in (attrs or {}).items():
                f.attrs[k] = v if isinstance(v, str) else json.dumps(v, sort_keys=True)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def export(demos_folder: Path | str, out: Path | str, *, force: bool = False) -> Path:
    """``safeknob demos export --format hdf5``: write a demonstration folder as one
    DSRL/D4RL file ``out`` (attributes: env id and kwargs, role, source).

    Raises ArtifactError on a folder without costs or an existing ``out`` without ``force``.
    """
    demos_folder, out = Path(demos_folder), Path(out)
    trajs = data.load(demos_folder)
    if out.exists() and not force:
        raise ArtifactError(f"{out} already exists; add --force to replace it")
    if not data.has_costs(trajs):
        raise ArtifactError(
            f"{demos_folder} has no per-step cost in its infos; record it with "
            "`safeknob collect-demos`"
        )
    attrs: dict[str, Any] = {"source": f"safeknob demonstrations {demos_folder}"}
    try:
        manifest = json.loads((demos_folder / "manifest.json").read_text())
        env = manifest["config"]["env"]
        attrs.update(env_id=str(env["id"]), env_kwargs=env.get("kwargs") or {})
        attrs["role"] = str(manifest.get("role", ""))
    except (OSError, json.JSONDecodeError, KeyError, TypeError):
        pass  # the arrays are what matter; provenance when there is a manifest
    return write(out, trajs, attrs)
