"""``safeknob sweep``: local process pool, failures, resuming, the Ray backend."""

from __future__ import annotations

import importlib.util
import os

import pandas as pd
import pytest
from conftest import tiny_config
from typer.testing import CliRunner

from safeknob.cli import app
from safeknob.errors import UserError
from safeknob.stages import sweep

HAS_RAY = importlib.util.find_spec("ray") is not None
# CI installs ray (.ci/run: make install-ray): there the Ray test must run, never skip.
RAY_REQUIRED = bool(os.environ.get("CI"))


def _rows(root, name="tiny-grid") -> set[tuple[str, float, int]]:
    df = pd.read_csv(root / name / "eval" / "results.csv")
    return {(m, round(a, 2), int(s)) for m, a, s in zip(df.method, df.alpha, df.seed, strict=True)}


def test_local_sweep_then_rerun_does_nothing(pipeline_root):
    sc = sweep.SweepConfig(
        (tiny_config(),),
        pipeline_root,
        methods=("mixture", "bc-mix"),
        alphas=(0.25, 0.75),
        workers=2,
        quiet=True,
    )
    out = sweep.run(sc)
    blends = pipeline_root / "tiny-grid" / "blends"
    for m in ("mixture", "bc-mix"):
        for a in ("0.25", "0.75"):
            assert (blends / m / f"alpha-{a}" / "meta.json").is_file()
    assert out == pipeline_root / "tiny-grid" / "eval"
    assert {(m, a, 0) for m in ("mixture", "bc-mix") for a in (0.25, 0.75)} <= _rows(pipeline_root)
    results = out / "results.csv"
    stamp = results.stat().st_mtime_ns
    jobs = sweep.plan(sc)
    assert len(jobs) == 4 and all(sweep.is_finished(j) for j in jobs)

    # Re-running: every job is skipped without starting a worker, nothing is re-evaluated.
    def boom(*args, **kwargs):
        raise AssertionError("a finished sweep started workers")

    import safeknob.stages.sweep as mod

    orig = mod._run_local
    mod._run_local = boom
    try:
        sweep.run(sc)
    finally:
        mod._run_local = orig
    assert results.stat().st_mtime_ns == stamp


def test_jobs_measure_their_agents_for_the_evaluation(pipeline_root, monkeypatch):
    """A job rolls its agents out into the evaluation's cache (in parallel, in its worker):
    the evaluation after the fan-out then measures only the experts, with the same numbers
    as measuring everything itself."""
    import shutil

    from safeknob.config import RunConfig
    from safeknob.stages import evaluate

    sc = sweep.SweepConfig((tiny_config(),), pipeline_root, methods=("mixture",),
                           alphas=(0.25, 0.75), seeds=(0, 1), quiet=True)  # fmt: skip
    for job in sweep.plan(sc):
        assert sweep.run_job(job).status == "done"  # in this process: no pool needed here
    rc = RunConfig(tiny_config(), pipeline_root, quiet=True)
    measured: list[int] = []
    real = evaluate.measure
    monkeypatch.setattr(evaluate, "measure", lambda *a, **k: measured.append(1) or real(*a, **k))
    evaluate.run(rc)
    assert len(measured) == 2  # the two experts, not the four blends
    warm = pd.read_csv(rc.paths.eval / "results.csv")
    shutil.rmtree(rc.paths.cache / "eval")
    evaluate.run(rc)
    assert len(measured) == 2 + 6
    pd.testing.assert_frame_equal(warm, pd.read_csv(rc.paths.eval / "results.csv"))


def test_failed_job_is_reported_and_others_finish(pipeline_root):
    # bc-mix cannot write its folders (a file sits where blends/bc-mix/ goes): its jobs fail
    # in the worker, the others finish and are evaluated.
    blocker = pipeline_root / "tiny-grid" / "blends" / "bc-mix"
    blocker.parent.mkdir(parents=True)
    blocker.write_text("not a folder")
    sc = sweep.SweepConfig(
        (tiny_config(),),
        pipeline_root,
        methods=("mixture", "bc-mix"),
        alphas=(0.5,),
        seeds=(0, 1),
        workers=1,
        quiet=True,
    )
    with pytest.raises(sweep.SweepError) as err:
        sweep.run(sc)
    assert "2 of 4 sweep jobs failed" in str(err.value)
    failed = sorted((r for r in err.value.results if r.status == "failed"), key=lambda r: r.job)
    assert [r.job for r in failed] == ["bc-mix_alpha-0.50_seed-0", "bc-mix_alpha-0.50_seed-1"]
    logs = pipeline_root / "tiny-grid" / "sweep-logs"
    assert [r.log for r in failed] == [logs / f"{r.job}.log" for r in failed]
    assert all("Traceback" in r.log.read_text() for r in failed)
    blends = pipeline_root / "tiny-grid" / "blends"
    # A seed other than the experiment's gets its own folder.
    for folder in ("mixture/alpha-0.50", "mixture/alpha-0.50_seed-1"):
        assert (blends / folder / "meta.json").is_file(), folder
    rows = _rows(pipeline_root)
    assert {("mixture", 0.5, 0), ("mixture", 0.5, 1)} <= rows
    assert not any(m == "bc-mix" for m, _, _ in rows)

    # Fixed and re-run: only the failed jobs run, and their stale logs go away.
    blocker.unlink()
    results = pipeline_root / "tiny-grid" / "eval" / "results.csv"
    sweep.run(sc)
    assert not any(r.log.exists() for r in failed)
    assert {("bc-mix", 0.5, 0), ("bc-mix", 0.5, 1), ("mixture", 0.5, 1)} <= _rows(pipeline_root)
    for folder in ("bc-mix/alpha-0.50", "bc-mix/alpha-0.50_seed-1"):
        assert (blends / folder / "meta.json").is_file(), folder
    assert results.is_file()


def test_bad_input_is_one_line(tmp_path, tiny_experiment_file):
    runner = CliRunner()
    base = ["sweep", "-e", str(tiny_experiment_file), "--data", str(tmp_path), "-q"]
    cases = [
        (["--backend", "slurm"], "unknown backend 'slurm'"),
        (["--methods", "mixtrue"], "unknown method 'mixtrue'"),
        (["--alphas", "0,2"], "alpha must be in [0, 1]"),
        (["--seeds", "0,x"], "malformed seed list"),
        (["--address", "auto"], "--address needs --backend ray"),
    ]
    for extra, msg in cases:
        res = runner.invoke(app, base + extra)
        assert res.exit_code == 2, (extra, res.output)
        assert msg in res.output, (extra, res.output)
        assert "Traceback" not in res.output
        assert len(res.output.strip().splitlines()) == 1, res.output
    assert not (tmp_path / "tiny-grid").exists()  # bad input writes nothing


@pytest.mark.skipif(HAS_RAY, reason="ray is installed")
def test_ray_backend_without_ray(tmp_path):
    sc = sweep.SweepConfig((tiny_config(),), tmp_path, methods=("mixture",), backend="ray")
    with pytest.raises(UserError, match=r"^ray is not installed; run `make install-ray`$"):
        sweep.run(sc)
    assert not (tmp_path / "tiny-grid").exists()


@pytest.mark.skipif(
    not HAS_RAY and not RAY_REQUIRED, reason="ray is not installed (make install-ray)"
)
def test_ray_backend(pipeline_root):
    sc = sweep.SweepConfig(
        (tiny_config(),),
        pipeline_root,
        methods=("mixture",),
        alphas=(0.5,),
        seeds=(0, 1),
        backend="ray",
        workers=1,
        quiet=True,
    )
    sweep.run(sc)
    assert {("mixture", 0.5, 0), ("mixture", 0.5, 1)} <= _rows(pipeline_root)


def test_a_finished_learned_reward_job_starts_no_worker(pipeline_root):
    """``is_finished`` records the settings an agent on a learned reward depends on
    (``[rewards]`` too) as the blend stage does, so a finished budget-airl job is finished."""
    sc = sweep.SweepConfig(
        (tiny_config(),), pipeline_root, methods=("budget-airl",), alphas=(0.5,), quiet=True
    )
    sweep.run(sc)
    jobs = sweep.plan(sc)
    assert jobs and all(sweep.is_finished(j) for j in jobs)
