"""Stage ``calibrate``: measure a method's response curve (requested alpha -> realized
position) on its alpha grid and store the monotone inverse map, so that ``blend`` can ask
the method for the internal setting that lands at the requested position.

The map lives in ``blends/<method>/calibration.json`` and names its experiment and method;
``blend`` refuses a map from another experiment or method.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rich.table import Table

from safeknob.artifacts import ArtifactError, make_meta, write_json
from safeknob.config import RunConfig
from safeknob.stages.common import console
from safeknob.store import CALIBRATE_STAGE as STAGE
from safeknob.store import CALIBRATION_FILE as FILE
from safeknob.store import CalibrationMap, ExperimentStore


def isotonic(y: np.ndarray) -> np.ndarray:
    """Non-decreasing least-squares fit, shape of ``y`` (pool adjacent violators,
    ``scipy.optimize.isotonic_regression``)."""
    from scipy.optimize import isotonic_regression

    return np.asarray(isotonic_regression(np.asarray(y, dtype=float)).x, dtype=float)


@dataclass(frozen=True)
class CalibrateConfig:
    run: RunConfig
    method: str
    """Method column name in eval/results.csv (e.g. ``budget-env``, ``conditioned``)."""


def run(cc: CalibrateConfig) -> Path:
    """Fit the map from ``eval/results.csv`` rows of the method; returns the map's path."""
    rc = cc.run
    results, _ = ExperimentStore(rc).results()
    df = results[results.method == cc.method]
    if df.empty:
        known = sorted(m for m in results.method.unique() if not str(m).startswith("expert-"))
        raise ArtifactError(
            f"no evaluated agents of method {cc.method!r} in {rc.paths.eval}; run "
            f"`safeknob train-blend --method ...` and `safeknob evaluate` first "
            f"(evaluated: {', '.join(known) or 'none'})"
        )
    per_alpha = df.groupby("alpha", sort=True)["position"].mean()
    if per_alpha.isna().all():
        raise ArtifactError(
            "positions are undefined (the experts have equal cost); cannot calibrate"
        )
    per_alpha = per_alpha.dropna()
    alphas = per_alpha.index.to_numpy(dtype=float)
    raw = per_alpha.to_numpy(dtype=float)
    fitted = isotonic(raw)
    cmap = CalibrationMap(tuple(alphas.tolist()), tuple(fitted.tolist()))
    before = float(np.mean(np.abs(raw - alphas)))
    # In-sample estimate of what calibration achieves: the fitted curve at the mapped alpha.
    after_pts = [float(np.interp(cmap.internal(a), alphas, fitted)) for a in alphas]
    after = float(np.mean(np.abs(np.asarray(after_pts) - alphas)))
    path = rc.paths.blends / cc.method / FILE
    if _same_fit(path, rc.experiment.name, cc.method, cmap, raw):
        if not rc.quiet:
            console.print(f"calibration map of {cc.method} is up to date: {path}")
        return path
    write_json(
        path,
        make_meta(
            STAGE,
            {"experiment": rc.experiment.name, "method": cc.method},
            rc.experiment.seed,
            inputs={"results": rc.paths.eval / "results.csv"},
            experiment=rc.experiment.name,
            method=cc.method,
            alphas=list(cmap.alphas),
            positions_raw=raw.tolist(),
            positions=list(cmap.positions),
            calibration_error_before=before,
            calibration_error_after_in_sample=after,
        ),
    )
    if not rc.quiet:
        t = Table(title=f"Calibration of {cc.method} ({rc.experiment.name})")
        for c in ("requested", "realized (raw)", "realized (monotone)", "internal alpha to ask"):
            t.add_column(c, justify="right")
        for a, r, f in zip(alphas, raw, fitted, strict=True):
            t.add_row(f"{a:.2f}", f"{r:.3f}", f"{f:.3f}", f"{cmap.internal(a):.3f}")
        console.print(t)
        console.print(
            f"mean |position - alpha|: {before:.3f} as trained; {after:.3f} through the map "
            "(in-sample, interpolated). A method whose cost moves in steps cannot do better "
            "than its steps allow."
        )
        console.print(f"saved {path}")
    return path


def _same_fit(path: Path, experiment: str, method: str, cmap: CalibrationMap, raw) -> bool:
    """Whether ``path`` already holds this fit (then it is not rewritten, so a resumed run
    changes nothing on disk)."""
    try:
        old = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return False
    return (
        old.get("experiment") == experiment
        and old.get("method") == method
        and old.get("alphas") == list(cmap.alphas)
        and old.get("positions_raw") == [float(x) for x in raw]
        and old.get("positions") == list(cmap.positions)
    )
