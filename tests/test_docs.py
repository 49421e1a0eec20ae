"""``make docs``' tables: mean [95% interval over seeds] with several training seeds."""

from __future__ import annotations

import pandas as pd

from safeknob.docs import summary_markdown


def _row(method: str, n_seeds: int) -> dict:
    row = {"method": method, "n_seeds": n_seeds, "violations": 0, "train_seconds": 12.0}
    for col in ("spearman", "calibration_error", "calibration_max", "frontier_gap_mean",
                "frontier_gap_max", "chord_gain_mean"):  # fmt: skip
        row[col], row[f"{col}_lo"], row[f"{col}_hi"] = 0.5, 0.25, 0.75
    row["frontier_gap_max_lo"] = row["frontier_gap_max_hi"] = float("nan")  # no interval
    return row


def test_several_seeds_show_their_interval_and_one_seed_does_not():
    table = summary_markdown(pd.DataFrame([_row("budget-env", 3), _row("mixture", 1)]))
    lines = table.splitlines()
    assert lines[0].startswith("| method | seeds | Spearman")
    budget, mixture = lines[2], lines[3]
    assert "| 3 | 0.500 [0.250, 0.750] | 0 |" in budget
    assert budget.count("[0.250, 0.750]") == 5  # not frontier_gap_max (no interval)
    assert "[" not in mixture and "| 1 | 0.500 | 0 |" in mixture
