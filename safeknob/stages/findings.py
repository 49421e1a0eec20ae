"""The report's words: numbers formatted for tables, the yardstick section and short
generated findings about the methods (with the noise intervals of
:mod:`safeknob.stages.yardstick`)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import pandas as pd

from safeknob.config import RunConfig
from safeknob.envs.frontier import COIN_FLIP_ALPHAS, Frontier
from safeknob.errors import ConfigError, UserError
from safeknob.evaluation.figures import agent_rows
from safeknob.evaluation.metrics import SUMMARY_COLUMNS, ExpertStats
from safeknob.evaluation.page import Document
from safeknob.methods.registry import method_of
from safeknob.stages import yardstick

SUMMARY_TABLE_COLUMNS = [
    c for c in SUMMARY_COLUMNS if c != "experiment" and not c.endswith(("_lo", "_hi"))
]
"""The summary table's columns: a metric with a 95% interval over training seeds in
``summary.csv`` (``<column>_lo``/``_hi``) shows as ``mean [lo, hi]`` in its own column when
the method has ``n_seeds`` > 1."""
INT_COLUMNS = {"n_alphas", "violations", "n_seeds"}


def fmt(x: Any, digits: int = 3) -> str:
    """A number to ``digits`` decimals, "n/a" for nan/None, ints as ints."""
    if x is None:
        return "n/a"
    if isinstance(x, str):
        return x
    try:
        v = float(x)
    except (TypeError, ValueError):
        return str(x)
    if math.isnan(v):
        return "n/a"
    return f"{v:.{digits}f}"


def fmt_int(x: Any) -> str:
    """An integer, "n/a" for nan."""
    try:
        v = float(x)
    except (TypeError, ValueError):
        return str(x)
    return "n/a" if math.isnan(v) else str(int(round(v)))


def ci(mean: float, lo: float, hi: float) -> str:
    """``mean [lo, hi]`` to 3 decimals."""
    return f"{fmt(mean)} [{fmt(lo)}, {fmt(hi)}]"


def _row_seeds(r: pd.Series) -> int:
    """A summary row's ``n_seeds`` (1 when missing: a summary.csv from before the column)."""
    n = r.get("n_seeds", 1)
    return int(n) if pd.notna(n) else 1


def _cell(r: pd.Series, c: str) -> str:
    if c not in r.index:  # a summary.csv from before the column existed
        return "1" if c == "n_seeds" else "n/a"
    if c == "method":
        return str(r[c])
    if c in INT_COLUMNS:
        return fmt_int(r[c])
    if _row_seeds(r) > 1 and f"{c}_lo" in r.index and f"{c}_hi" in r.index:
        return ci(r[c], r[f"{c}_lo"], r[f"{c}_hi"])
    return fmt(r[c])


def summary_rows(summary: pd.DataFrame) -> list[list[str]]:
    """The summary table's cells, one row per method in ``SUMMARY_TABLE_COLUMNS`` order: a
    metric as ``mean [lo, hi]`` (its 95% interval over training seeds) when the method has
    several seeds and ``summary`` has ``<metric>_lo``/``_hi``, else its value."""
    return [[_cell(r, c) for c in SUMMARY_TABLE_COLUMNS] for _, r in summary.iterrows()]


def noise_phrase(methods: Sequence[str], intervals: Sequence[yardstick.MethodInterval]) -> str:
    """Which intervals compare ``methods``: "95% intervals over N training seeds" when each has
    N >= 2 seeds (``MethodInterval.seeds``), "per-agent 95% intervals" when each has one."""
    by = {m.method: m.seeds for m in intervals}
    seeds = sorted({by.get(m, 1) for m in methods})
    if seeds == [1]:
        return "per-agent 95% intervals"
    if min(seeds) > 1:
        n = str(seeds[0]) if len(seeds) == 1 else f"{seeds[0]}-{seeds[-1]}"
        return f"95% intervals over {n} training seeds"
    return "95% intervals over training seeds (per-agent for one-seed methods)"


def _decided(
    best: str, ties: list[str], intervals: Sequence[yardstick.MethodInterval] | None
) -> str:
    """The :func:`noise_phrase` of the intervals that compared ``best`` with ``ties`` (or,
    with no ties, with every other method); "" when ``best`` has no finite interval or there is
    nothing to compare it with (then no interval decided anything)."""
    if not intervals or not any(m.method == best and math.isfinite(m.lo) for m in intervals):
        return ""
    others = ties or [m.method for m in intervals if m.method != best and math.isfinite(m.lo)]
    if not others:
        return ""
    return noise_phrase([best, *others], intervals)


def is_baseline(method: str) -> bool:
    """True for a method that trains nothing (the registry's ``trains``: ``mixture``, the coin
    flip): the findings and the recommendation measure the trained methods against it rather
    than rank it among them. Unknown names (other tools' rows) count as trained."""
    try:
        return not method_of(method).trains
    except (UserError, ConfigError):
        return False


def _ties(best: str, intervals: Sequence[yardstick.MethodInterval] | None) -> list[str]:
    """Methods whose interval overlaps ``best``'s (no difference beyond the noise)."""
    if not intervals:
        return []
    by = {m.method: m for m in intervals}
    if best not in by or not math.isfinite(by[best].lo):
        return []
    return [
        m.method
        for m in intervals
        if m.method != best and math.isfinite(m.lo) and not yardstick.separated(by[best], m)
    ]


def _calibration_finding(
    s: pd.DataFrame, single: bool, calibration: Sequence[yardstick.MethodInterval] | None
) -> str:
    """The sentence naming the best-calibrated trained method (or the tie), with the others'
    errors and the baseline's beside them."""
    cal = s.dropna(subset=["calibration_error"]).sort_values("calibration_error", kind="stable")
    trained = ~cal.method.map(is_baseline)
    base = cal.iloc[0:0]  # only baselines: rank them
    if trained.any():  # rank the trained methods; the baselines are quoted beside them
        base, cal = cal[~trained], cal[trained]
        calibration = [m for m in calibration or [] if not is_baseline(m.method)]
    if cal.empty:
        return "Calibration error is undefined for every method (equal expert costs)."
    b = cal.iloc[0]
    lead = "Only one method was evaluated, " if single else ""
    ties = _ties(str(b.method), calibration)
    noise = _decided(str(b.method), ties, calibration)
    best = (
        f" is best calibrated{f' (disjoint {noise})' if noise else ''}, with"
        if not ties
        else f" has the lowest calibration error, within the noise of {', '.join(ties)} "
        f"(overlapping {noise}):"
    )
    text = (
        f"{lead}**{b.method}**"
        + (":" if single else best)
        + f" calibration error {fmt(b.calibration_error)} (mean |position - alpha| over "
        f"{fmt_int(b.n_alphas)} alphas; max {fmt(b.calibration_max)})"
    )
    others = [f"{r.method} {fmt(r.calibration_error)}" for _, r in cal.iloc[1:].iterrows()]
    others += [f"{r.method} (baseline) {fmt(r.calibration_error)}" for _, r in base.iterrows()]
    return text + (f"; others: {', '.join(others)}." if others else ".")


def findings(
    summary: pd.DataFrame,
    has_frontier: bool,
    intervals: Sequence[yardstick.MethodInterval] | None = None,
    calibration: Sequence[yardstick.MethodInterval] | None = None,
) -> list[str]:
    """Short generated statements about the methods (with numbers).

    ``intervals`` (:func:`yardstick.method_intervals` of the frontier gap, or of the chord gain
    without an exact model) and ``calibration`` (of the calibration error) decide when one
    method is called better than another: only when their intervals are disjoint. A method with
    2+ training seeds brings its 95% interval over seeds (``summary.csv``'s ``_lo``/``_hi``, via
    ``yardstick.method_intervals(..., summary=...)``), one seed its per-agent interval; the text
    names the intervals that decided. Without intervals the lowest/highest mean is named."""
    if summary.empty:
        return ["No blended method was evaluated yet; only the experts appear below."]
    s = summary.copy()
    s["method"] = s["method"].astype(str)
    out: list[str] = []
    single = len(s) == 1

    out.append(_calibration_finding(s, single, calibration))

    gap = s.dropna(subset=["frontier_gap_mean"]).sort_values("frontier_gap_mean", kind="stable")
    if not gap.empty:
        b = gap.iloc[0]
        ties = _ties(str(b.method), intervals)
        noise = _decided(str(b.method), ties, intervals)
        if single:
            lead = "Its"
        elif ties:
            lead = (
                f"**{b.method}** has the smallest frontier gap, but not beyond the noise "
                f"(overlapping {noise} with {', '.join(ties)}): the data do not rank them. Its"
            )
        else:
            sep = f" (disjoint {noise})" if noise else ""
            lead = f"**{b.method}** is closest to the exact frontier{sep}, with"
        text = (
            f"{lead} mean frontier gap {'is ' if single or ties else ''}"
            f"{fmt(b.frontier_gap_mean)} (max {fmt(b.frontier_gap_max)}), as a fraction of the "
            "experts' return range"
        )
        others = [f"{r.method} {fmt(r.frontier_gap_mean)}" for _, r in gap.iloc[1:].iterrows()]
        out.append(text + (f"; others: {', '.join(others)}." if others else "."))
    else:
        why = "this env has no exact model" if not has_frontier else "no gap could be computed"
        chord = s.dropna(subset=["chord_gain_mean"]).sort_values(
            "chord_gain_mean", ascending=False, kind="stable"
        )
        text = f"There is no frontier gap ({why})"
        if not chord.empty:
            b = chord.iloc[0]
            ties = _ties(str(b.method), intervals)
            noise = _decided(str(b.method), ties, intervals)
            if single:
                who = "its mean chord gain is"
            elif ties:
                who = (
                    f"**{b.method}** has the largest mean chord gain, not beyond the noise "
                    f"(overlapping {noise} with {', '.join(ties)}),"
                )
            else:
                sep = f" (disjoint {noise})" if noise else ""
                who = f"**{b.method}** has the best mean chord gain{sep},"
            text += (
                f"; {who} {fmt(b.chord_gain_mean)} (return above the coin-flip "
                "mixture at equal cost, as a fraction of the experts' return range)"
            )
        out.append(text + ".")

    mono, non, undef = [], [], []
    for _, r in s.iterrows():
        sp = float(r.spearman) if pd.notna(r.spearman) else math.nan
        if math.isnan(sp):
            undef.append(str(r.method))
        elif sp >= 1.0 - 1e-9:
            mono.append(str(r.method))
        else:
            non.append(f"{r.method} (Spearman {fmt(sp)}, {fmt_int(r.violations)} violations)")
    parts = []
    if mono:
        parts.append(f"Monotone in alpha (Spearman = 1): {', '.join(mono)}.")
    if non:
        parts.append(f"Not monotone: {', '.join(non)}.")
    if undef:
        parts.append(f"Monotonicity undefined (fewer than 2 alphas): {', '.join(undef)}.")
    out.append(" ".join(parts))
    out.extend(recommendation(s, intervals))
    return out


def recommendation(
    s: pd.DataFrame, intervals: Sequence[yardstick.MethodInterval] | None = None
) -> list[str]:
    """Which trained method to use: monotone (Spearman >= 0.95) and calibrated (error <= 0.1),
    then the smallest frontier gap (or the largest chord gain without an exact model).
    A baseline (:func:`is_baseline`, ``mixture``) is not recommended: it stays on the chord. Other eligible
    methods whose ``intervals`` overlap the choice's are named as tied within the noise, with
    which intervals (over training seeds or per agent) overlap."""
    ok = s[
        ~s.method.astype(str).map(is_baseline)
        & (s.spearman.fillna(-1) >= 0.95)
        & (s.calibration_error.fillna(math.inf) <= 0.1)
    ]
    if ok.empty:
        return ["No trained method is both monotone (Spearman >= 0.95) and calibrated "
                "(error <= 0.1) here; see the table."]  # fmt: skip
    if ok.frontier_gap_mean.notna().any():
        b = ok.sort_values("frontier_gap_mean", kind="stable").iloc[0]
        why = f"frontier gap {fmt(b.frontier_gap_mean)}"
    else:
        b = ok.sort_values("chord_gain_mean", ascending=False, kind="stable").iloc[0]
        why = f"chord gain {fmt(b.chord_gain_mean)}"
    eligible = set(ok.method.astype(str))
    ties = [m for m in _ties(str(b.method), intervals) if m in eligible]
    text = (
        f"Recommendation: **{b.method}**, the trained method that is monotone and calibrated "
        f"(Spearman {fmt(b.spearman)}, calibration error {fmt(b.calibration_error)}) with "
        f"the best {why}"
    )
    if ties:
        text += (
            f"; {', '.join(ties)} {'is' if len(ties) == 1 else 'are'} as good within the noise "
            f"(overlapping {noise_phrase([str(b.method), *ties], intervals or [])}), so "
            "calibration or cost may decide"
        )
    return [text + "."]


def _run_alphas(results: pd.DataFrame, rc: RunConfig) -> list[float]:
    alphas = sorted({float(a) for a in agent_rows(results).alpha.dropna()})
    return alphas or [float(a) for a in rc.experiment.blend.alphas]


def yardstick_section(
    doc: Document,
    rc: RunConfig,
    results: pd.DataFrame,
    frontier: Frontier | None,
    experts: ExpertStats,
    summary: pd.DataFrame | None = None,
) -> list[yardstick.MethodInterval]:
    """The report's opening: how much room the experts leave a knob (the coin flip's exact
    frontier gap, or on HazardNav the estimated best chord gain) and each method's share of it,
    with noise intervals (:mod:`safeknob.stages.yardstick`). Returns the intervals the findings
    rank methods by (frontier gap, or chord gain without an exact model)."""
    doc.heading("Yardstick")
    agents = agent_rows(results)
    alphas = _run_alphas(results, rc)
    gains = yardstick.method_intervals(agents, experts, "chord_gain", summary=summary)
    by_gain = {m.method: m for m in gains}
    noise = (
        "A method is called better than another only when their intervals are disjoint: for a "
        "method with 2+ training seeds the 95% interval over seeds (marked *s*), otherwise one "
        "from each agent's 95% bootstrap intervals of return and cost (the agents' errors taken "
        "as fully correlated, so it is wide rather than narrow)."
    )

    def iv(m: yardstick.MethodInterval | None) -> str:
        if m is None:
            return "n/a"
        return f"{fmt(m.mean)} [{fmt(m.lo)}, {fmt(m.hi)}]" + (" *s*" if m.seeds > 1 else "")

    flip = yardstick.coin_flip(frontier, experts, alphas) if frontier is not None else None
    if frontier is not None and flip is not None:
        gaps = yardstick.method_intervals(agents, experts, "frontier_gap", frontier, summary)
        inner = yardstick.coin_flip(frontier, experts, COIN_FLIP_ALPHAS)
        room = flip.mean
        doc.para(
            "Flipping a coin between the experts (the `mixture` baseline) puts an agent on their "
            f"chord; over this run's {len(alphas)} alphas the exact frontier is on average "
            f"**{fmt(room)}** of the experts' return range above it (max {fmt(flip.max)}"
            + (f"; {fmt(inner.mean)} over alphas 0.1 .. 0.9" if inner is not None else "")
            + "). That is the room a knob has: frontier gap 0 takes all of it, a gap of "
            f"{fmt(room)} none (`safeknob frontier` prints it for the exact experts). " + noise
        )
        rows = []
        for m in gaps:
            share = 1.0 - m.mean / room if room > 1e-12 else math.nan
            rows.append([m.method, iv(m), fmt(share), iv(by_gain.get(m.method))])
        if rows:
            doc.table(
                ["method", "frontier gap [interval]", "share of the room taken",
                 "chord gain [interval]"],
                rows,
            )  # fmt: skip
        return gaps
    if frontier is not None:
        doc.para(
            "This env has an exact frontier, but the experts' measured returns and costs are "
            "missing or their returns are equal, so the coin flip's room (and every gap as a "
            "fraction of the experts' return range) is undefined; `safeknob frontier` prints "
            "the room between the exact experts."
        )
        return []
    nav = yardstick.nav_best_gain(rc, alphas)
    if nav is not None:
        best = nav[0]
        doc.para(
            "This env has no exact model. Its value-iteration estimate "
            "(`experiments/nav_frontier.py`, cached in `cache/nav_frontier.json`) puts the best "
            f"mean chord gain over this run's {len(alphas)} alphas at **{best:+.3f}** of the "
            "experts' return range: the room a knob has above the coin flip (chord gain 0). The "
            "estimate's routes are slightly worse than trained agents' (0.01-0.03 of return), "
            "so read it as a scale, not a bound. " + noise
        )
        rows = [
            [m.method, iv(m), f"{best:+.3f}", fmt(m.mean / best) if best > 1e-12 else "n/a"]
            for m in gains
        ]
        if rows:
            doc.table(["method", "chord gain [interval]", "estimated best", "share of it"], rows)
        return gains
    doc.para(
        "This env has no exact model and no frontier estimate: a chord gain of 0 is the coin "
        "flip between the experts, above 0 is better. " + noise
    )
    if gains:
        doc.table(["method", "chord gain [interval]"], [[m.method, iv(m)] for m in gains])
    return gains
