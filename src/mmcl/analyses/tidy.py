"""Machine-readable outputs: the tidy cell-level results, per-metric seed summaries and the metrics tree."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import pandas as pd

from mmcl.analyses.runs import NAN, Run, in_order
from mmcl.metrics.statistics import t_interval, wilson_interval

RESULTS_COLUMNS = [
    "suite",
    "order",
    "backbone",
    "method",
    "seed",
    "stage",
    "stage_task",
    "task",
    "metric",
    "value",
    "fingerprint",
    "commit",
]
RESULTS_KEY = RESULTS_COLUMNS[:9]  # a cell: (suite, order, backbone, method, seed, stage, stage_task, task, metric)
SUMMARY_COLUMNS = [
    "suite",
    "order",
    "backbone",
    "method",
    "metric",
    "mean",
    "std",
    "n_seeds",
    "ci_low",
    "ci_high",
    "interval",
]
BASELINE = "finetune"  # forgetting reductions are relative to naive fine-tuning
DECIMALS = 6  # summary rounding: hides float summation noise (55.099999999) without losing information


def frame_csv(frame: pd.DataFrame) -> str:
    return frame.to_csv(index=False, lineterminator="\n")


SEEDS_INTERVAL = "t over seeds"
ITEMS_INTERVAL = "Wilson over test items"


@dataclass(frozen=True)
class Stat:
    """One quantity over the seeds where it is defined: mean, sample std, 95% interval, and the per-seed
    values (in the order of its row's seeds, NaN where undefined) that paired comparisons read."""

    mean: float
    std: float  # NaN with fewer than two defined values: one seed says nothing about spread
    n: int
    low: float = NAN
    high: float = NAN
    interval: str = ""  # SEEDS_INTERVAL, ITEMS_INTERVAL, or "" when there is none
    values: tuple[float, ...] = ()


def seed_stat(values: Sequence[float]) -> Stat:
    """Mean, std (ddof=1) and Student t interval over the defined values; undefined (NaN) seeds are left out."""
    defined = [v for v in values if not math.isnan(v)]
    if not defined:
        return Stat(NAN, NAN, 0, values=tuple(values))
    mean = sum(defined) / len(defined)
    if len(defined) < 2:
        return Stat(mean, NAN, 1, values=tuple(values))
    std = math.sqrt(sum((v - mean) ** 2 for v in defined) / (len(defined) - 1))
    low, high = t_interval(mean, std, len(defined))
    return Stat(mean, std, len(defined), low, high, SEEDS_INTERVAL, tuple(values))


def item_stat(stat: Stat, samples: int) -> Stat:
    """A single seed's accuracy with the Wilson interval of its ``samples`` test items (unchanged otherwise)."""
    if stat.n != 1 or not samples:
        return stat
    low, high = wilson_interval(stat.mean, samples)
    return replace(stat, low=low, high=high, interval=ITEMS_INTERVAL)


def results_frame(runs: Sequence[Run]) -> pd.DataFrame:
    """One row per defined matrix cell of every run (1-based stages; a joint run's stage is the last one)."""
    rows = []
    for run in runs:
        for metric, matrix in run.matrix.items():
            for row, stage_task in enumerate(run.stages):
                stage = len(run.tasks) if run.is_joint else row + 1
                for col, task in enumerate(run.eval_tasks):
                    value = float(matrix[row, col])
                    if not math.isnan(value):
                        rows.append((*run.key, stage, stage_task, task, metric, value, run.fingerprint, run.commit))
    frame = pd.DataFrame(rows, columns=RESULTS_COLUMNS)
    return frame.sort_values(RESULTS_KEY, kind="stable", ignore_index=True)


def summary_frame(runs: Sequence[Run]) -> pd.DataFrame:
    """Mean, std and 95% interval (``seed_stat``) over seeds of every run-level metric, per (suite, order,
    backbone, method)."""
    by_method: dict[tuple[str, str, str, str], list[Run]] = {}
    for run in runs:
        by_method.setdefault(run.key[:4], []).append(run)
    rows = []
    for key, members in by_method.items():
        for metric in sorted({name for run in members for name in run.metrics}):
            stat = seed_stat([run.metrics.get(metric, NAN) for run in members])
            numbers = (round(value, DECIMALS) for value in (stat.mean, stat.std))
            interval = (round(value, DECIMALS) for value in (stat.low, stat.high))
            rows.append((*key, metric, *numbers, stat.n, *interval, stat.interval))
        if (baseline := by_method.get((*key[:3], BASELINE))) and key[3] != BASELINE:
            reduction = forgetting_reduction(members, baseline)
            rows.append((*key, "forgetting_reduction_pct", round(reduction, DECIMALS), NAN, len(members), NAN, NAN, ""))
    frame = pd.DataFrame(rows, columns=SUMMARY_COLUMNS)
    return frame.sort_values(SUMMARY_COLUMNS[:5], kind="stable", ignore_index=True)


def forgetting_reduction(runs: Sequence[Run], baseline: Sequence[Run]) -> float:
    """How much less a method forgets than ``finetune``, in percent: 100 * (F_ft - F) / F_ft.

    F is the seed mean of the average forgetting over every task of the order (``forgetting``: each
    task in its primary metric). NaN when fine-tuning does not forget (F_ft <= 0).
    """
    ours = seed_stat([run.metrics.get("forgetting", NAN) for run in runs]).mean
    theirs = seed_stat([run.metrics.get("forgetting", NAN) for run in baseline]).mean
    return 100 * (theirs - ours) / theirs if theirs > 0 else NAN


def metrics_tree(summary: pd.DataFrame, method_order: Sequence[str] | None) -> dict:
    """``{suite: {order: {backbone: {method: {metric: mean}}}}}`` with methods in ``method_order``."""
    rank = {m: i for i, m in enumerate(in_order(summary["method"], method_order))}
    ordered = summary.sort_values(
        ["suite", "order", "backbone", "method", "metric"],
        key=lambda col: col.map(rank) if col.name == "method" else col,
        kind="stable",
    )
    tree: dict = {}
    for row in ordered.itertuples(index=False):
        mean = None if math.isnan(row.mean) else float(row.mean)
        tree.setdefault(row.suite, {}).setdefault(row.order, {}).setdefault(row.backbone, {}).setdefault(
            row.method, {}
        )[row.metric] = mean
    return tree
