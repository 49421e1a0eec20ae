"""Optional Weights & Biases tracking (``safeknob --wandb ...``; the extra
``safeknob[wandb]``, ``make install-wandb``).

One W&B run per command: its config is the command's resolved experiment (every section,
after ``--seed``, ``--quick`` and ``--cost-fn``), grouped by experiment name, with the
command as job type. What the command writes to TensorBoard (``data/<experiment>/tb/``:
PPO and PPO-Lagrangian training, Lagrange multipliers, episode costs, AIRL statistics) is
mirrored with W&B's own TensorBoard sync (``wandb.tensorboard.patch`` with the experiment's
``tb/`` folder as root, the explicit form of ``wandb.init(sync_tensorboard=True)`` that
stable-baselines3's documentation and CleanRL use): every scalar goes to the run's
history and the event files to its files. ``--no-tensorboard`` leaves only the config. Only logs written in the command's own process are mirrored: jobs run in worker
processes (``--workers 2``, the default of ``run`` and ``reproduce``; ``sweep``) keep their
TensorBoard files, which ``wandb sync
--sync-tensorboard`` uploads.

Offline use: ``WANDB_MODE=offline`` writes the run under ``$WANDB_DIR`` (default
``data/<experiment>/``) as ``wandb/offline-run-*``, for ``wandb sync`` later; the tests run
this way. Project: ``$WANDB_PROJECT`` or ``safeknob``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from safeknob.errors import UserError

INSTALL = "make install-wandb (or pip install 'safeknob[wandb]')"

_run: Any = None


def _wandb() -> Any:
    try:
        import wandb
    except ImportError:
        raise UserError(f"--wandb needs wandb, which is not installed; run `{INSTALL}`") from None
    return wandb


def start(config: dict[str, Any], experiment: str, command: str, root: Path, tb_root: Path) -> Any:
    """Start (or keep) this process's W&B run; returns it.

    Args:
        config: the resolved experiment as a plain dict (logged as the run's config).
        experiment: its name (the run's group).
        command: the safeknob command (the run's job type and name prefix).
        root: the experiment's data folder; the run lives under ``$WANDB_DIR`` or here.
        tb_root: the folder under which the command's TensorBoard logs go.

    Raises:
        UserError: wandb is not installed, or it failed to start (one line each).
    """
    global _run
    if _run is not None:
        return _run
    wandb = _wandb()
    root = Path(os.environ.get("WANDB_DIR") or root)
    root.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("WANDB_SILENT", "true")
    try:
        wandb.tensorboard.patch(root_logdir=str(tb_root))
        _run = wandb.init(
            project=os.environ.get("WANDB_PROJECT", "safeknob"),
            group=experiment,
            job_type=command,
            name=f"{experiment}-{command}",
            config=config,
            dir=str(root),
            reinit="finish_previous",
        )
    except Exception as exc:  # noqa: BLE001 - W&B's errors (no login, network) as one line
        wandb.tensorboard.unpatch()
        raise UserError(
            f"--wandb: W&B did not start ({type(exc).__name__}: {str(exc).splitlines()[0]}); "
            "run `wandb login`, or set WANDB_MODE=offline"
        ) from None
    return _run


def finish(exit_code: int = 0) -> None:
    """Close this process's run, if one is open (flushes the mirrored logs)."""
    global _run
    if _run is not None:
        run, _run = _run, None
        run.finish(exit_code=exit_code)
        _wandb().tensorboard.unpatch()
