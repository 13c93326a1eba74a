"""The main table of every (suite, order, backbone): one row per method with the final score on every
task, the averages over the order's QA and captioning tasks, forgetting, BWT, plasticity and the
forgetting reduction against fine-tuning; then the most-common-answer reference row."""

from __future__ import annotations

import math
from collections.abc import Sequence

from mmcl.analyses.runs import NAN, Run, in_order
from mmcl.analyses.tables import (
    DAGGER,
    MethodTable,
    TableRow,
    compared,
    fixed_row,
    joint_trained,
    method_rows,
    task_header,
    uncertainty_legend,
)
from mmcl.analyses.tidy import BASELINE, Stat, item_stat, seed_stat

REFERENCE_LABEL = "most common (reference)"
TASK_LEGEND = "score on the task after the final stage, in its primary metric (Acc = accuracy in %, CIDEr ×100)."
EXTRA_LEGEND = (
    "not in the training sequence: evaluated after every stage to track knowledge the base model had "
    "before continual training."
)
JOINT_LEGEND = (
    "multitask training on all tasks at once (a single stage), so only final scores are defined; "
    "forgetting, BWT and Learned are not."
)
REFERENCE_LEGEND = (
    "predicts the most common training answer / caption; a fixed predictor, so Learned equals its final "
    "score and forgetting/BWT do not apply."
)


def _forgetting(family: str, metric: str) -> str:
    return (
        f"mean over the order's {family} tasks except the last trained of (max {metric} at an earlier stage "
        f"− final {metric}); higher = more forgotten."
    )


def _bwt(family: str, metric: str) -> str:
    return (
        f"backward transfer: mean over the order's {family} tasks except the last trained of (final {metric} "
        f"− {metric} right after learning the task); negative = forgetting."
    )


REDUCTION = "Forgetting vs finetune (%)"
REDUCTION_LEGEND = (
    "100 × (F_finetune − F) / F_finetune with F the Forgetting column's mean: how much less the method forgets "
    "than naive fine-tuning (negative: more)."
)


# (header, run-level metric, the summary (``TaskFamily.summary``) whose tasks' mean reference score fills the
# reference row, definition). The reference predictor is fixed, so its score "right after learning" is its
# final score, and forgetting/BWT do not apply to it (None).
SUMMARY_COLUMNS: tuple[tuple[str, str, str | None, str], ...] = (
    ("Avg CIDEr", "last_cider", "cider", "mean final CIDEr over the order's captioning tasks."),
    ("Avg Acc", "last_acc", "acc", "mean final accuracy over the order's QA tasks."),
    ("Forgetting Acc", "forgetting_acc", None, _forgetting("QA", "accuracy")),
    ("Forgetting CIDEr", "forgetting_cider", None, _forgetting("captioning", "CIDEr")),
    (
        "Forgetting",
        "forgetting",
        None,
        "average forgetting over every task of the order except the last trained, each in its primary "
        "metric (accuracy points, CIDEr ×100).",
    ),
    ("BWT Acc", "bwt_acc", None, _bwt("QA", "accuracy")),
    ("BWT CIDEr", "bwt_cider", None, _bwt("captioning", "CIDEr")),
    (
        "Learned Acc",
        "learn_acc",
        "acc",
        "mean accuracy of each QA task right after the stage that trained it (plasticity).",
    ),
)


def _strict_mean(values: list[float]) -> float:
    """Mean, or NaN when there is no value or any is undefined: a partial average would mislead."""
    return sum(values) / len(values) if values and not any(math.isnan(v) for v in values) else NAN


def _reference_row(run: Run, baseline: dict) -> TableRow:
    """The most-common-answer predictor's scores, averaged the way the run-level metrics are."""

    def score(task: str, metric: str) -> float:
        value = baseline.get(task, {}).get("metrics", {}).get(metric)
        return NAN if value is None else float(value)

    cells = [score(task, run.primary_metric[task]) for task in run.report_tasks]
    for _, _, suffix, _ in SUMMARY_COLUMNS:
        tasks, metric = run.summarised(suffix) if suffix else ([], "")
        cells.append(_strict_mean([score(t, metric) for t in tasks]))
    return fixed_row(REFERENCE_LABEL, cells)


def _method_cells(runs: list[Run]) -> list[Stat]:
    first = runs[0]
    cells = [seed_stat([run.final(task) for run in runs]) for task in first.report_tasks]
    cells = [  # one seed: an accuracy's interval over its test items
        item_stat(cell, first.samples.get(task, (0, 0))[0]) if first.primary_metric[task] == "accuracy" else cell
        for cell, task in zip(cells, first.report_tasks, strict=True)
    ]
    return cells + [seed_stat([run.metrics.get(metric, NAN) for run in runs]) for _, metric, _, _ in SUMMARY_COLUMNS]


def _with_reduction(rows: list[TableRow], forgetting: int) -> list[TableRow]:
    """Each method row gains its forgetting reduction relative to the ``finetune`` row (NaN without one)."""
    base = next((row.cells[forgetting].mean for row in rows if row.label == BASELINE), NAN)
    extended = []
    for row in rows:
        ours = row.cells[forgetting].mean
        value = 100 * (base - ours) / base if row.seeds and row.label != BASELINE and base > 0 else NAN
        extended.append(TableRow(row.label, (*row.cells, Stat(value, NAN, len(row.seeds))), row.seeds))
    return extended


def _legend(
    run: Run,
    kept: list[str],
    rows: list[TableRow],
    compare_with: str | None,
    joint_methods: list[str],
    with_reference: bool,
) -> list[tuple[str, str]]:
    """Definitions of the columns (and special rows) that the table actually shows."""
    legend = [("task (metric)", TASK_LEGEND)]
    if run.extra_tasks:
        legend.append((DAGGER, EXTRA_LEGEND))
    legend += [(header, text) for header, _, _, text in SUMMARY_COLUMNS if header in kept]
    if REDUCTION in kept:
        legend.append((REDUCTION, REDUCTION_LEGEND))
    legend += uncertainty_legend(rows, compare_with)
    if joint_methods:
        legend.append((", ".join(joint_methods), JOINT_LEGEND))
    if with_reference:
        legend.append((REFERENCE_LABEL, REFERENCE_LEGEND))
    if run.samples:
        legend.append(("test samples", samples_legend(run)))
    return legend


def samples_legend(run: Run) -> str:
    """How many test samples each task is scored on, and the standard error that number implies."""
    counts = ", ".join(
        f"{task} {n}" + (f" of {of} (a seeded subset, evaluation.max_samples)" if n < of else "")
        for task, (n, of) in run.samples.items()
    )
    fewest = min(n for n, _ in run.samples.values())
    return (
        f"per task: {counts}. An accuracy of p% on n samples has a binomial standard error of "
        f"100·sqrt(p(1-p)/n) points: at most ±{50 / math.sqrt(fewest):.1f} here (p = 50%, n = {fewest})"
    )


def build_table(
    runs: Sequence[Run], baseline: dict | None, method_order: Sequence[str] | None, compare_with: str | None = None
) -> MethodTable:
    """Rows = methods in ``method_order`` (then the reference row); columns = tasks, then summaries, each
    summary tested against the ``compare_with`` row.

    Summary columns undefined in every row (e.g. CIDEr ones for an order without captioning) are dropped.
    """
    first = runs[0]
    methods = in_order((run.method for run in runs), method_order)
    rows = method_rows(runs, methods, _method_cells)
    joint_methods = joint_trained(runs, methods)
    if baseline is not None:
        rows.append(_reference_row(first, baseline))
    headers = [task_header(first, task) for task in first.report_tasks]
    headers += [header for header, _, _, _ in SUMMARY_COLUMNS] + [REDUCTION]
    rows = _with_reduction(rows, headers.index("Forgetting"))
    kept = [
        i
        for i, header in enumerate(headers)
        if i < len(first.report_tasks) or any(not math.isnan(row.cells[i].mean) for row in rows)
    ]
    rows = [TableRow(row.label, tuple(row.cells[i] for i in kept), row.seeds) for row in rows]
    kept_headers = [headers[i] for i in kept]
    summaries = [i for i, header in enumerate(kept_headers) if header in {h for h, _, _, _ in SUMMARY_COLUMNS}]
    rows = compared(rows, compare_with, summaries)
    legend = _legend(first, kept_headers, rows, compare_with, joint_methods, baseline is not None)
    return MethodTable.of(first, kept_headers, rows, legend, baseline=compare_with)
