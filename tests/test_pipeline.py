"""End to end on the tiny grid: experts -> demos -> mixture grid -> evaluate."""

from __future__ import annotations

import pandas as pd

from safeknob.stages import blend, evaluate
from safeknob.stages.evaluate import RESULT_COLUMNS, SUMMARY_COLUMNS


def test_mixture_pipeline_writes_contract_columns(run_config):
    blend.run(blend.BlendRunConfig(run_config, "mixture", (0.0, 0.5, 1.0)))
    out = evaluate.run(run_config)
    results = pd.read_csv(out / "results.csv")
    summary = pd.read_csv(out / "summary.csv")
    assert list(results.columns) == RESULT_COLUMNS
    assert list(summary.columns) == SUMMARY_COLUMNS
    assert set(results.method) == {"expert-safe", "expert-reckless", "mixture"}
    mix = results[results.method == "mixture"].set_index("alpha")
    experts = results.set_index("method")
    # alpha = 0 and 1 replay the experts episode for episode (common random numbers).
    assert mix.loc[0.0, "cost_mean"] == experts.loc["expert-safe", "cost_mean"]
    assert mix.loc[1.0, "cost_mean"] == experts.loc["expert-reckless", "cost_mean"]
    assert results.frontier_gap.notna().all()
    assert summary.set_index("method").loc["mixture", "n_alphas"] == 3


def test_evaluate_is_byte_identical_on_rerun(run_config):
    blend.run(blend.BlendRunConfig(run_config, "mixture", (0.0, 0.5, 1.0)))
    first = (evaluate.run(run_config) / "results.csv").read_bytes()
    second = (evaluate.run(run_config) / "results.csv").read_bytes()
    assert first == second


def test_run_command_goes_end_to_end_and_resumes(tiny_experiment_file, tmp_path):
    """`safeknob run` chains every stage (all methods) and a second run resumes with no work."""
    from typer.testing import CliRunner

    from safeknob.cli import app

    runner = CliRunner()
    args = ["run", "-e", str(tiny_experiment_file), "--data", str(tmp_path), "-q", "--workers", "1"]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    root = tmp_path / "tiny-grid"
    for name in ("report.md", "report.html", "frontier.png", "knob.png", "trajectories.png"):
        assert (root / "report" / name).is_file()
    summary = pd.read_csv(root / "eval" / "summary.csv")
    assert set(summary.method) == {
        "mixture", "bc-mix", "budget-env", "budget-airl", "conditioned", "reward-mix"
    }  # fmt: skip
    before = {p: p.stat().st_mtime_ns for p in (root / "blends").rglob("*.json")}
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    after = {p: p.stat().st_mtime_ns for p in (root / "blends").rglob("*.json")}
    assert before == after  # nothing retrained


def test_tensorboard_logs_and_can_be_turned_off(tiny_experiment_file, tmp_path):
    from typer.testing import CliRunner

    from safeknob.cli import app

    runner = CliRunner()
    on, off = tmp_path / "on", tmp_path / "off"
    base = ["train-experts", "-e", str(tiny_experiment_file), "-q"]
    assert runner.invoke(app, [*base, "--data", str(on)]).exit_code == 0
    assert runner.invoke(app, ["--no-tensorboard", *base, "--data", str(off)]).exit_code == 0
    events = list((on / "tiny-grid" / "tb" / "train-experts").rglob("events.out.tfevents*"))
    assert {p.relative_to(on / "tiny-grid" / "tb" / "train-experts").parts[0] for p in events} == {
        "reckless",
        "safe",
    }
    assert not (off / "tiny-grid" / "tb").exists()
