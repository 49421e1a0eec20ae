"""End to end on the tiny grid: experts -> demos -> mixture grid -> evaluate."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from safeknob.stages import blend, evaluate
from safeknob.stages.calibrate import CalibrationMap
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
        "mixture", "bc-mix", "bc-mix+cal", "budget-env", "budget-airl", "conditioned",
        "conditioned+cal", "reward-mix",
    }  # fmt: skip
    # "+cal" agents were asked through the map fitted on the raw agents' positions.
    cal = json.loads((root / "blends" / "bc-mix" / "calibration.json").read_text())
    raw = pd.read_csv(root / "eval" / "results.csv").query("method == 'bc-mix'")
    assert cal["positions_raw"] == pytest.approx(raw.sort_values("alpha").position.tolist())
    for meta_path in (root / "blends" / "bc-mix+cal").glob("alpha-*/meta.json"):
        meta = json.loads(meta_path.read_text())
        assert meta["calibrated"] is True
        cmap = CalibrationMap(tuple(cal["alphas"]), tuple(cal["positions"]))
        assert meta["internal_alpha"] == pytest.approx(cmap.internal(meta["alpha"]))
    timings = json.loads((root / "cache" / "timings.json").read_text())
    for stage in ("experts", "demonstrations", "learned rewards", "blends", "evaluate",
                  "calibrate", "calibrated blends", "report"):  # fmt: skip
        assert timings[stage] >= 0, stage
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


def test_evaluate_reuses_measurements_of_unchanged_agents(run_config, monkeypatch):
    blend.run(blend.BlendRunConfig(run_config, "mixture", (0.0, 0.5)))
    first = (evaluate.run(run_config) / "results.csv").read_bytes()
    calls = []
    real = evaluate.measure
    monkeypatch.setattr(evaluate, "measure", lambda *a, **k: calls.append(1) or real(*a, **k))
    assert (evaluate.run(run_config) / "results.csv").read_bytes() == first
    assert calls == []  # every agent came from cache/eval/
    # A changed agent is measured again; the others are not.
    meta = run_config.paths.blends / "mixture" / "alpha-0.50" / "meta.json"
    meta.write_text(meta.read_text().replace("{", '{"touched": 1, ', 1))
    evaluate.run(run_config)
    assert len(calls) == 1


def test_train_blend_calibrated_without_a_map_is_one_line(pipeline_root, tiny_experiment_file):
    from typer.testing import CliRunner

    from safeknob.cli import app

    res = CliRunner().invoke(
        app,
        ["train-blend", "-e", str(tiny_experiment_file), "--data", str(pipeline_root),
         "-m", "bc-mix", "--calibrated", "-q"],
    )  # fmt: skip
    assert res.exit_code != 0
    assert "safeknob calibrate --method bc-mix" in res.output
    assert "Traceback" not in res.output
    assert not (pipeline_root / "tiny-grid" / "blends" / "bc-mix+cal").exists()
