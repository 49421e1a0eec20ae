"""Stage ``report`` on the tiny grid: files, tables, self-contained HTML, errors, reruns."""

from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd
import pytest
from conftest import tiny_config
from matplotlib.image import imread

from safeknob.artifacts import ArtifactError
from safeknob.config import RunConfig
from safeknob.envs.drawing import save_figure
from safeknob.envs.hazard_nav import HazardNavEnv
from safeknob.evaluation.figures import expert_stats
from safeknob.evaluation.rollout import rollout
from safeknob.stages import blend, evaluate, report

FILES = ("frontier.png", "knob.png", "trajectories.png", "report.md", "report.html")


@pytest.fixture()
def evaluated(run_config):
    blend.run(blend.BlendRunConfig(run_config, "mixture", (0.0, 0.25, 0.5, 0.75, 1.0)))
    evaluate.run(run_config)
    return run_config


def test_report_writes_figures_and_documents(evaluated):
    out = report.run(evaluated)
    folder = evaluated.paths.report
    assert out == folder / "report.md"
    assert sorted(p.name for p in folder.iterdir()) == sorted(FILES)
    for name in FILES[:3]:
        path = folder / name
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        img = imread(path)
        assert img.shape[0] > 200 and img.shape[1] > 200
        assert img[..., :3].std() > 0.01  # not a blank canvas

    md = out.read_text()
    header = "| " + " | ".join(report.SUMMARY_TABLE_COLUMNS) + " |"
    assert header in re.sub(r" +", " ", md)  # pandas pads the cells
    for method in ("mixture", "expert-safe", "expert-reckless"):
        assert method in md
    for name in FILES[:3]:
        assert f"]({name})" in md
    assert "```toml" in md and 'name = "tiny-grid"' in md
    assert "Monotone" in md or "Not monotone" in md

    page = (folder / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 3
    assert "<table>" in page and "mixture" in page
    assert 'src="frontier.png"' not in page and 'src="http' not in page  # all inline


def test_report_without_eval_names_the_command(run_config):
    with pytest.raises(ArtifactError, match="safeknob evaluate"):
        report.run(run_config)
    assert not run_config.paths.report.exists()


def test_report_rerun_replaces_cleanly(evaluated):
    folder = evaluated.paths.report
    report.run(evaluated)
    (folder / "stale.txt").write_text("left over")
    report.run(evaluated)
    assert sorted(p.name for p in folder.iterdir()) == sorted(FILES)
    leftovers = [p.name for p in folder.parent.iterdir() if p.name.startswith((".tmp-", ".old-"))]
    assert leftovers == []


def test_findings_single_method_nan_and_no_frontier():
    nan = math.nan
    summary = pd.DataFrame(
        [
            {
                "experiment": "x", "method": "budget", "n_alphas": 1, "spearman": nan,
                "violations": 0, "calibration_error": 0.1, "calibration_max": 0.2,
                "chord_gain_mean": 0.05, "frontier_gap_mean": nan, "frontier_gap_max": nan,
                "cost_std_mean": 1.0, "train_seconds": 3.0,
            }
        ]
    )  # fmt: skip
    text = " ".join(report.findings(summary, has_frontier=False))
    assert "budget" in text and "0.100" in text and "no exact model" in text
    rows = report.summary_rows(summary)
    assert rows[0][report.SUMMARY_TABLE_COLUMNS.index("frontier_gap_mean")] == "n/a"
    assert report.findings(summary.iloc[:0], has_frontier=True)  # no methods: still a sentence


def test_nearest_alphas_prefers_interior():
    assert report.nearest_alphas([0.0, 0.25, 0.5, 0.75, 1.0]) == [0.25, 0.5, 0.75]
    assert report.nearest_alphas([0.0, 0.6, 1.0]) == [0.6]
    assert report.nearest_alphas([0.0, 1.0]) == [0.0, 1.0]


class _Random:
    def start_episode(self, slot, rng):
        self.rng = rng

    def act(self, obs, slots):
        return np.random.default_rng(len(obs)).uniform(-1, 1, size=(len(obs), 2)).astype("f4")


def test_nav_paths_figure(tmp_path):
    runs = [
        ("random", rollout(_Random(), lambda: HazardNavEnv(horizon=15), 3, seed=0, record=True))
    ]
    fig = HazardNavEnv().trajectory_figure(runs, "nav")
    path = tmp_path / "nav.png"
    save_figure(fig, path)
    assert imread(path).shape[0] > 200


def _synthetic_results(positions: dict[str, list[float]], alphas=(0.0, 0.5, 1.0)) -> pd.DataFrame:
    """Experts at cost 0 and 10 (so cost = 10 * position) and one row per method and alpha."""
    rows = [
        {"method": "expert-safe", "alpha": np.nan, "seed": 0, "return_mean": 0.5,
         "return_lo": 0.49, "return_hi": 0.51, "cost_mean": 0.0, "cost_lo": 0.0, "cost_hi": 0.0},
        {"method": "expert-reckless", "alpha": np.nan, "seed": 0, "return_mean": 0.8,
         "return_lo": 0.79, "return_hi": 0.81, "cost_mean": 10.0, "cost_lo": 9.9, "cost_hi": 10.1},
    ]  # fmt: skip
    for method, ps in positions.items():
        for a, p in zip(alphas, ps, strict=True):
            c = 10.0 * p
            rows.append(
                {"method": method, "alpha": a, "seed": 0, "return_mean": 0.5 + 0.3 * p,
                 "return_lo": 0.49 + 0.3 * p, "return_hi": 0.51 + 0.3 * p, "cost_mean": c,
                 "cost_lo": c - 0.2, "cost_hi": c + 0.2}
            )  # fmt: skip
    return pd.DataFrame(rows)


def test_knob_figure_clips_an_outlier_and_the_caption_lists_it(tmp_path):
    results = _synthetic_results({"good": [0.0, 0.52, 1.0], "wild": [0.0, 8.35, -2.0]})
    assert report.knob_outliers(results) == [("wild", 0.5, pytest.approx(8.35)),
                                             ("wild", 1.0, pytest.approx(-2.0))]  # fmt: skip
    fig = report.plot_knob(results, "x")
    ax = fig.axes[0]
    lo, hi = ax.get_ylim()
    # The good method's 0.02 miss stays visible: the axis spans ~2.2, not ~10.
    assert -0.7 <= lo < -0.5 and 1.5 < hi <= 1.7
    labels = {t.get_text() for t in ax.texts}
    assert {"8.35", "-2.00"} <= labels
    assert "clipped" in ax.get_title()
    for line in ax.lines:  # every drawn point is inside the axis
        y = np.asarray(line.get_ydata(), dtype=float)
        assert np.all((y >= lo) & (y <= hi))
    save_figure(fig, tmp_path / "knob.png")
    assert imread(tmp_path / "knob.png")[..., :3].std() > 0.01
    # Without an outlier nothing is clipped or annotated.
    fig = report.plot_knob(_synthetic_results({"good": [0.0, 0.52, 1.0]}), "x")
    assert "clipped" not in fig.axes[0].get_title()
    assert report.knob_outliers(_synthetic_results({"good": [0.0, 0.52, 1.0]})) == []


# ---------------------------------------------------------------- several training seeds
def _seeded_results(positions: dict[str, dict[int, list[float]]], alphas=(0.0, 0.5, 1.0)):
    """``_synthetic_results`` with one row per (method, alpha, training seed), and the per-agent
    columns the report's tables read (narrow per-agent CIs: +-0.02 of position)."""
    parts = []
    for seed in sorted({s for by_seed in positions.values() for s in by_seed}):
        rows = _synthetic_results(
            {m: by_seed[seed] for m, by_seed in positions.items() if seed in by_seed}, alphas
        )
        parts.append(rows.assign(seed=seed) if seed == 0 else rows.iloc[2:].assign(seed=seed))
    out = pd.concat(parts, ignore_index=True)
    return out.assign(
        position=out.cost_mean / 10.0, chord_gain=0.0, frontier_gap=np.nan, cost_std=1.0,
        episodes=40,
    )  # fmt: skip


def _seed_summary(n_seeds: int, cal: dict[str, tuple[float, float, float]]) -> pd.DataFrame:
    """A summary.csv with calibration error and chord gain ``(mean, lo, hi)`` over seeds."""
    rows = []
    for method, (m, lo, hi) in cal.items():
        rows.append(
            {"experiment": "x", "method": method, "n_alphas": 3, "n_seeds": n_seeds,
             "spearman": 1.0, "spearman_lo": 1.0, "spearman_hi": 1.0, "violations": 0,
             "calibration_error": m, "calibration_error_lo": lo, "calibration_error_hi": hi,
             "calibration_max": 2 * m, "calibration_max_lo": 2 * lo, "calibration_max_hi": 2 * hi,
             "chord_gain_mean": 0.5 - m, "chord_gain_mean_lo": 0.5 - hi,
             "chord_gain_mean_hi": 0.5 - lo, "frontier_gap_mean": np.nan,
             "frontier_gap_mean_lo": np.nan, "frontier_gap_mean_hi": np.nan,
             "frontier_gap_max": np.nan, "cost_std_mean": 1.0, "train_seconds": 2.0}
        )  # fmt: skip
    return pd.DataFrame(rows)


def test_summary_table_shows_the_interval_over_seeds():
    cols = report.SUMMARY_TABLE_COLUMNS
    three = report.summary_rows(_seed_summary(3, {"a": (0.02, 0.01, 0.03)}))[0]
    assert three[cols.index("calibration_error")] == "0.020 [0.010, 0.030]"
    assert three[cols.index("chord_gain_mean")] == "0.480 [0.470, 0.490]"
    assert three[cols.index("n_seeds")] == "3" and three[cols.index("violations")] == "0"
    assert three[cols.index("frontier_gap_mean")] == "n/a [n/a, n/a]"
    one = report.summary_rows(_seed_summary(1, {"a": (0.02, 0.02, 0.02)}))[0]
    assert one[cols.index("calibration_error")] == "0.020" and one[cols.index("n_seeds")] == "1"
    # A summary.csv from before the seed columns: plain values, one seed.
    old = _seed_summary(3, {"a": (0.02, 0.01, 0.03)})
    old = old[[c for c in old.columns if not c.endswith(("_lo", "_hi")) and c != "n_seeds"]]
    row = report.summary_rows(old)[0]
    assert row[cols.index("calibration_error")] == "0.020" and row[cols.index("n_seeds")] == "1"


def _findings(tmp_path, results, summary) -> str:
    rc = RunConfig(tiny_config(), tmp_path, quiet=True)
    doc = report.build_document(rc, results, summary, None, expert_stats(results), "", False)
    return doc.markdown()


def test_report_ranks_by_the_intervals_over_seeds(tmp_path):
    # Per-agent CIs (+-0.02 of position) separate a (on the identity) from b (0.1 off) at
    # every alpha; the intervals over seeds below decide instead.
    results = _seeded_results(
        {
            "a": {s: [0.0, 0.5, 1.0] for s in range(3)},
            "b": {s: [0.1, 0.6, 0.9] for s in range(3)},
        }
    )
    overlap = _seed_summary(3, {"a": (0.02, 0.01, 0.05), "b": (0.04, 0.03, 0.06)})
    md = _findings(tmp_path, results, overlap)
    assert "| 0.020 [0.010, 0.050] |" in re.sub(r" +", " ", md)
    assert (
        "**a** has the lowest calibration error, within the noise of b (overlapping 95% "
        "intervals over 3 training seeds)" in md
    )
    assert "best calibrated" not in md
    assert (
        "**a** has the largest mean chord gain, not beyond the noise (overlapping 95% "
        "intervals over 3 training seeds with b)" in md
    )
    assert "b is as good within the noise (overlapping 95% intervals over 3 training seeds)" in md

    apart = _seed_summary(3, {"a": (0.02, 0.01, 0.025), "b": (0.04, 0.03, 0.06)})
    md = _findings(tmp_path, results, apart)
    assert "**a** is best calibrated (disjoint 95% intervals over 3 training seeds)" in md
    assert "**a** has the best mean chord gain (disjoint 95% intervals over 3 training seeds)" in md
    assert "within the noise" not in md and "not beyond the noise" not in md

    # One seed: the per-agent intervals decide (disjoint here), and the text says so.
    one = _seeded_results({"a": {0: [0.0, 0.5, 1.0]}, "b": {0: [0.1, 0.6, 0.9]}})
    md = _findings(tmp_path, one, _seed_summary(1, {"a": (0.0, 0.0, 0.0), "b": (0.1, 0.1, 0.1)}))
    assert "**a** is best calibrated (disjoint per-agent 95% intervals)" in md
    findings = md.split("Findings")[1].split("Summary per method")[0]
    assert "training seeds" not in findings and "per-agent" in findings


def test_the_baseline_is_quoted_not_ranked_among_the_trained_methods(tmp_path):
    """``mixture`` (the registry's ``trains=False``) is exactly calibrated by construction: the
    findings name the best-calibrated *trained* method and quote the baseline beside it."""
    results = _seeded_results(
        {
            "mixture": {s: [0.0, 0.5, 1.0] for s in range(3)},
            "budget-env": {s: [0.0, 0.52, 1.0] for s in range(3)},
            "conditioned": {s: [0.1, 0.6, 0.9] for s in range(3)},
        }
    )
    summary = _seed_summary(
        3,
        {
            "mixture": (0.004, 0.004, 0.004),
            "budget-env": (0.02, 0.01, 0.025),
            "conditioned": (0.05, 0.04, 0.06),
        },
    )
    md = _findings(tmp_path, results, summary)
    assert "**budget-env** is best calibrated (disjoint 95% intervals over 3 training seeds)" in md
    assert "others: conditioned 0.050, mixture (baseline) 0.004." in md
    assert "**mixture** is best calibrated" not in md
    assert "Recommendation: **budget-env**" in md


def test_knob_figure_draws_each_seed_and_their_range():
    per_seed = {0: [0.0, 0.40, 1.0], 1: [0.1, 0.50, 0.9], 2: [0.2, 0.75, 1.1]}
    results = _seeded_results({"a": per_seed, "b": {s: [0.0, 0.5, 1.0] for s in range(3)}})
    fig = report.plot_knob(results, "x")
    ax = fig.axes[0]
    assert "mean over 3 training seeds; dots: each seed, bars: their range" in ax.get_title()
    dots = [c for c in ax.collections if c.get_offsets().shape[0] == 9]  # 3 alphas x 3 seeds
    assert len(dots) == 2  # one scatter per method
    ys = np.sort(np.asarray(dots[0].get_offsets())[:, 1])
    np.testing.assert_allclose(ys, np.sort(np.ravel(list(per_seed.values()))), atol=1e-9)
    bars = ax.containers[0]  # method a's errorbar: marker at the mean, bars the range
    np.testing.assert_allclose(bars.lines[0].get_ydata(), [0.1, 0.55, 1.0], atol=1e-9)
    segments = bars.lines[2][0].get_segments()
    lows_highs = [(min(s[:, 1]), max(s[:, 1])) for s in segments]
    np.testing.assert_allclose(lows_highs, [(0.0, 0.2), (0.4, 0.75), (0.9, 1.1)], atol=1e-9)

    one = report.plot_knob(_synthetic_results({"a": [0.0, 0.5, 1.0]}), "x").axes[0]
    assert "95% CIs of cost" in one.get_title() and "seeds" not in one.get_title()
    assert not [c for c in one.collections if c.get_offsets().shape[0] == 3]  # no dots
    segments = one.containers[0].lines[2][0].get_segments()  # the position's 95% CI
    np.testing.assert_allclose([min(s[:, 1]) for s in segments], [-0.02, 0.48, 0.98], atol=1e-9)


def test_frontier_figure_notes_every_seeds_agents():
    results = _seeded_results({"a": {s: [0.0, 0.5, 1.0] for s in range(3)}})
    title = report.plot_frontier(results, None, "x").axes[0].get_title()
    assert "every agent of 3 training seeds, line: their mean" in title
    title = report.plot_frontier(_synthetic_results({"a": [0.0, 0.5, 1.0]}), None, "x")
    assert "seeds" not in title.axes[0].get_title()
