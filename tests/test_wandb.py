"""`safeknob --wandb`: the resolved config and the TensorBoard scalars go to a W&B run
(offline here: WANDB_MODE=offline, no network). Needs the extra (`make install-wandb`; CI
installs it)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from safeknob.cli import app

runner = CliRunner()


def _offline_run(root: Path) -> Path:
    runs = sorted((root / "wandb").glob("offline-run-*"))
    assert len(runs) == 1, runs
    return runs[0]


def _log_bytes(run_dir: Path) -> bytes:
    """An offline run's transaction log (``run-*.wandb``, what `wandb sync` uploads). wandb
    >= 0.19 has no Python reader for it; its records are protobuf messages whose keys and
    JSON-encoded values are stored as plain UTF-8, so searching the bytes finds them."""
    return next(run_dir.glob("run-*.wandb")).read_bytes()


def test_wandb_offline_mirrors_tensorboard_and_logs_the_config(
    tiny_experiment_file, tmp_path, monkeypatch
):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wb"))
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    res = runner.invoke(
        app,
        [
            "--wandb",
            "train-experts",
            "-e",
            str(tiny_experiment_file),
            "--data",
            str(tmp_path / "data"),
            "--quiet",
            "--seed",
            "3",
        ],
    )
    assert res.exit_code == 0, res.output
    run_dir = _offline_run(tmp_path / "wb")
    log = _log_bytes(run_dir)
    # The resolved config: the experiment's name, its sections, the --seed override.
    assert b"tiny-grid" in log and b"cost_limit" in log and b"reckless_steps" in log
    assert re.search(rb"seed\W{1,6}3\W", log), "the --seed 3 override is not in the config"
    # Scalars mirrored from TensorBoard into the run's history: SB3's PPO statistics and
    # safeknob's Lagrange multiplier (only the safe expert's PPO-Lagrangian writes it).
    assert b"train/value_loss" in log
    assert b"lagrange/lambda" in log
    # ... and both experts' event files among the run's files.
    files = {p.parent.parent.name for p in (run_dir / "files").rglob("events.out.tfevents.*")}
    assert files == {"reckless", "safe"}, files
    # The same scalars are still in TensorBoard.
    assert list((tmp_path / "data" / "tiny-grid" / "tb").rglob("events.out.tfevents.*"))


def test_wandb_without_the_package_is_one_line(tiny_experiment_file, tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "wandb", None)
    res = runner.invoke(
        app,
        ["--wandb", "train-experts", "-e", str(tiny_experiment_file), "--data", str(tmp_path)],
    )
    assert res.exit_code == 2
    assert "make install-wandb" in res.output
    assert len([ln for ln in res.output.splitlines() if ln.strip()]) == 1, res.output
