"""The continual-LLaVA study's table: VL score and linguistic forgetting after the final stage, per method.

Only for runs of suites with linguistic measures (:attr:`Run.is_linguistic`); rendered by the main
table's Markdown/CSV/LaTeX writers. Formulas: ``mmcl.metrics.linguistic``.
"""

from __future__ import annotations

from collections.abc import Sequence

from mmcl.analyses.runs import NAN, Run, in_order
from mmcl.analyses.tables import (
    MethodTable,
    TableRow,
    compared,
    fixed_row,
    joint_trained,
    method_rows,
    uncertainty_legend,
)
from mmcl.analyses.tidy import seed_stat

# (measure, run-level metric after the final stage, column header)
MEASURES: tuple[tuple[str, str, str], ...] = (
    ("vl", "vl_score", "VL score"),
    ("nlu", "nlu_delta", "NLU Δ"),
    ("nlg", "nlg_delta", "NLG Δ"),
)
TITLE = "Linguistic forgetting"
BASE_LABEL = "base model (scores, not Δ)"


def measures_of(run: Run) -> list[tuple[str, str, str]]:
    """The measures the run's suite has (VL always; NLU and NLG where the suite has such text tasks)."""
    return [entry for entry in MEASURES if entry[0] in run.measures]


def _legend(
    run: Run, rows: list[TableRow], compare_with: str | None, joint_methods: list[str]
) -> list[tuple[str, str]]:
    names = {measure: ", ".join(run.measures[measure]) for measure, _, _ in measures_of(run)}
    legend = [
        (
            "VL score",
            f"harmonic mean of the final scores on the order's vision-language tasks ({names['vl']}), each in "
            "its primary metric; 0 when any of them is 0.",
        )
    ]
    for measure, _, header in measures_of(run)[1:]:
        legend.append(
            (
                header,
                f"base model's harmonic mean over the {measure.upper()} tasks ({names[measure]}) − the same after "
                "the final stage, in points: positive = forgetting, negative = the model got better.",
            )
        )
    legend += uncertainty_legend(rows, compare_with)
    if joint_methods:
        legend.append(
            (", ".join(joint_methods), "multitask training on all tasks at once: values after its one stage.")
        )
    legend.append(
        (
            BASE_LABEL,
            "the stage-0 model before any VL stage, shared by every method: its own harmonic means over the same "
            "tasks, i.e. the VL score it starts from and the NLU/NLG scores the Δ columns are measured from.",
        )
    )
    return legend


def build_linguistic_table(
    runs: Sequence[Run], method_order: Sequence[str] | None, compare_with: str | None = None
) -> MethodTable:
    """Rows = methods in ``method_order``, then the base model; columns = VL score, NLU Δ, NLG Δ, each tested
    against the ``compare_with`` row."""
    first = runs[0]
    measures = measures_of(first)
    methods = in_order((run.method for run in runs), method_order)
    rows = method_rows(
        runs, methods, lambda members: [seed_stat([r.metrics.get(m, NAN) for r in members]) for _, m, _ in measures]
    )
    rows.append(fixed_row(BASE_LABEL, [first.base_measures[measure] for measure, _, _ in measures]))
    joint_methods = joint_trained(runs, methods)
    headers = [header for _, _, header in measures]
    rows = compared(rows, compare_with, range(len(headers)))
    legend = _legend(first, rows, compare_with, joint_methods)
    return MethodTable.of(first, headers, rows, legend, title=TITLE, label="linguistic", baseline=compare_with)
