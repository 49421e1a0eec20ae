"""Rebuilding a stored blend's agent: the store checks the folder, its method rebuilds it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from safeknob.errors import ArtifactError
from safeknob.evaluation.rollout import Agent
from safeknob.methods.base import BlendContext, Method
from safeknob.methods.registry import get_method
from safeknob.store import LOAD_ERRORS


def load_blend(ctx: BlendContext, folder: Path) -> tuple[Method, dict[str, Any], Agent]:
    """The method, checked meta and agent stored in a blend folder.

    Raises ArtifactError (naming ``safeknob blend ... --force``) when the folder's files are
    missing or corrupt."""
    record = ctx.store.blend_at(folder)
    meta = record.meta
    method = get_method(record.method_arg, meta.get("reward"))
    try:
        agent = method.load_agent(ctx, folder, meta)
    except ArtifactError:
        raise
    except LOAD_ERRORS as exc:
        raise ArtifactError(
            f"{folder} cannot be loaded ({type(exc).__name__}: {exc}); re-run "
            f"`safeknob blend --method {record.method_arg} --alpha {meta.get('alpha')} --force`"
        ) from None
    return method, meta, agent
