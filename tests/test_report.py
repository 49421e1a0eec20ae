"""Stage ``report`` on the tiny grid: files, tables, self-contained HTML, errors, reruns."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from matplotlib.image import imread

from safeknob.artifacts import ArtifactError
from safeknob.envs.hazard_nav import HazardNavEnv
from safeknob.rollout import rollout
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
    assert header in md
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
    fig = report.plot_nav_paths(HazardNavEnv(), runs, "nav")
    path = tmp_path / "nav.png"
    report._save(fig, path)
    assert imread(path).shape[0] > 200
