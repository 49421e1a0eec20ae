"""Stage ``report`` on the tiny grid: files, tables, self-contained HTML, errors, reruns."""

from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd
import pytest
from matplotlib.image import imread

from safeknob.artifacts import ArtifactError
from safeknob.envs.drawing import save_figure
from safeknob.envs.hazard_nav import HazardNavEnv
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
