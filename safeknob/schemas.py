"""The structure of every artifact safeknob reads back, checked where it is read.

``read_meta`` checks an artifact's stage and schema version; the code after it indexes keys
directly, so a ``meta.json`` that parses but holds ``[]``, lacks ``evaluation`` or stores
``"alpha": "0.5"`` used to end in a ``KeyError``/``TypeError`` traceback. One schema per
artifact kind (a nested mapping of key -> expected type) is checked by :func:`check`, which
raises one :class:`~safeknob.artifacts.ArtifactError` naming the file, the key, and the
command that remakes the artifact.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from safeknob.artifacts import normalize
from safeknob.config import RunConfig
from safeknob.errors import ArtifactError


@dataclass(frozen=True)
class Optional:
    """A key that may be absent or null; when present, ``spec`` applies."""

    spec: Any


NUMBER = "number"
"""An int or float (not a bool, not a string)."""

_STATS = {
    "return_mean": NUMBER,
    "return_lo": NUMBER,
    "return_hi": NUMBER,
    "cost_mean": NUMBER,
    "cost_lo": NUMBER,
    "cost_hi": NUMBER,
}
_COMMON = {"stage": str, "schema": int, "config": dict, "seed": int}

EXPERT_META: dict[str, Any] = {
    **_COMMON,
    "role": str,
    "deterministic": Optional(bool),
    "cost_limit": Optional(NUMBER),
    "wall_seconds": Optional(NUMBER),
    "evaluation": {**_STATS, "episodes": int},
}
"""``experts/<role>/meta.json`` (``safeknob train-experts``)."""

DEMOS_MANIFEST: dict[str, Any] = {
    **_COMMON,
    "role": str,
    "summary": {**_STATS, "episodes": int, "transitions": int},
}
"""``demos/<role>/manifest.json`` (``safeknob collect-demos``)."""

BLEND_META: dict[str, Any] = {
    **_COMMON,
    "method": str,
    "method_arg": Optional(str),
    "reward": Optional(str),
    "alpha": NUMBER,
    "internal_alpha": Optional(NUMBER),
    "wall_seconds": Optional(NUMBER),
    "train_seconds": Optional(NUMBER),
}
"""``blends/<method>/alpha-A/meta.json`` (``safeknob train-blend``)."""

REWARD_META: dict[str, Any] = {
    **_COMMON,
    "role": str,
    "check": Optional(dict),
}
"""``rewards/<role>/meta.json`` (``safeknob learn-rewards``)."""


def check_belongs(
    rc: RunConfig, meta: Any, where: Path, sections: tuple[str, ...], fix: str
) -> None:
    """Raise ArtifactError unless the artifact at ``where`` (its ``meta``) was made for this
    experiment: the same name and the same config ``sections`` (e.g. an expert copied in from
    another experiment, or agents trained without the ``--cost-fn`` given now)."""
    cfg = meta.get("config") if isinstance(meta, dict) else None
    if not isinstance(cfg, dict):
        raise ArtifactError(f"{where} records no config; remake it with `{fix} --force`")
    exp = rc.experiment
    if cfg.get("name") != exp.name:
        raise ArtifactError(
            f"{where} was made for experiment {cfg.get('name')!r}, not {exp.name!r}; remake it "
            f"here with `{fix} --force`"
        )
    want = normalize(exp.to_dict())
    for section in sections:
        got, need = normalize(cfg.get(section)), want.get(section)
        if got == need:
            continue
        keys = (
            sorted(
                k
                for k in set(got or {}) | set(need or {})
                if (got or {}).get(k) != (need or {}).get(k)
            )
            if isinstance(got, dict) and isinstance(need, dict)
            else []
        )
        detail = ", ".join(
            f"{k}: {(got or {}).get(k)!r} there, {(need or {}).get(k)!r} now" for k in keys[:3]
        )
        raise ArtifactError(
            f"{where} was made with a different [{section}]"
            + (f" ({detail})" if detail else "")
            + f"; remake it with `{fix} --force` (or use the experiment it was made with)"
        )


def check_spaces(model: Any, env: Any, where: Path, fix: str) -> None:
    """Raise ArtifactError unless a loaded policy's observation and action spaces are the
    env's (an SB3 model saved for another env otherwise fails deep inside ``predict``)."""
    for what in ("observation_space", "action_space"):
        mine, theirs = getattr(model, what, None), getattr(env, what)
        if mine is not None and not _same_space(mine, theirs):
            raise ArtifactError(
                f"{where} was trained for the {what.replace('_', ' ')} {mine}, but the env has "
                f"{theirs}; remake it with `{fix} --force`"
            )


def _same_space(a: Any, b: Any) -> bool:
    if type(a) is not type(b):
        return False
    if hasattr(a, "n"):
        return int(a.n) == int(b.n) and int(getattr(a, "start", 0)) == int(getattr(b, "start", 0))
    if hasattr(a, "low"):
        return (
            a.shape == b.shape
            and np.allclose(a.low, b.low, equal_nan=True)
            and np.allclose(a.high, b.high, equal_nan=True)
        )
    return a == b


def _is(value: Any, spec: Any) -> bool:
    if spec == NUMBER:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if spec is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(spec, tuple):
        return any(_is(value, s) for s in spec)
    return isinstance(value, spec)


def _name(spec: Any) -> str:
    if spec == NUMBER:
        return "a number"
    if isinstance(spec, Mapping) or spec is dict:
        return "a JSON object"
    if isinstance(spec, tuple):
        return " or ".join(_name(s) for s in spec)
    return {str: "a string", int: "an integer", bool: "true or false"}.get(spec, spec.__name__)


def _problem(value: Any, schema: Mapping[str, Any], where: str) -> str | None:
    """The first way ``value`` departs from ``schema`` (None if it fits)."""
    if not isinstance(value, Mapping):
        return f"holds {type(value).__name__} {str(value)[:30]!r}, expected a JSON object"
    for key, spec in schema.items():
        path = f"{where}{key}"
        optional = isinstance(spec, Optional)
        spec = spec.spec if optional else spec
        if key not in value or value[key] is None:
            if optional:
                continue
            return f"lacks the key {path!r}" if key not in value else f"has {path} = null"
        v = value[key]
        if isinstance(spec, Mapping):
            problem = _problem(v, spec, f"{path}.")
            if problem is not None:
                return problem if isinstance(v, Mapping) else f"has {path} that {problem}"
        elif not _is(v, spec):
            return f"has {path} = {v!r:.40}, expected {_name(spec)}"
    return None


def check(meta: Any, schema: Mapping[str, Any], path: Path | str, fix: str) -> dict[str, Any]:
    """Return ``meta`` if it fits ``schema``; else raise ArtifactError naming ``path``, the
    first bad key, and ``fix`` (the command that remakes the artifact, run with --force)."""
    problem = _problem(meta, schema, "")
    if problem is not None:
        raise ArtifactError(f"{path} {problem}; remake it with `{fix} --force`")
    return dict(meta)


def check_table(
    columns: Iterable[str], rows: int, required: Iterable[str], path: Path | str, fix: str
) -> None:
    """Raise ArtifactError unless a table (e.g. ``eval/results.csv``) has rows and every
    ``required`` column."""
    have = set(columns)
    missing = [c for c in required if c not in have]
    if missing:
        more = f" (and {len(missing) - 5} more)" if len(missing) > 5 else ""
        raise ArtifactError(
            f"{path} lacks column(s) {', '.join(missing[:5])}{more}; remake it with `{fix}`"
        )
    if rows == 0:
        raise ArtifactError(f"{path} has no rows; remake it with `{fix}`")
