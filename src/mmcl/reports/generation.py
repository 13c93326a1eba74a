"""MoDE's table: understanding after the final stage, and what continual understanding training cost the
model's image generation, per method.

Only for runs of suites with generation tasks outside the order (:func:`has_generation`), whose run
files carry ``gen_before``/``gen_after``/``inter_forgetting``/``trainable_params`` (``mmcl.aggregate``);
rendered by the main table's Markdown/CSV/LaTeX writers.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from mmcl.reports.runs import NAN, QA, Run, in_order
from mmcl.reports.tables import UNDEFINED, MethodTable, TableRow, fixed_row, joint_trained, task_header
from mmcl.reports.tidy import Stat, seed_stat

TITLE = "Intra- and inter-modal forgetting"
BASE_LABEL = "stage-0 model"

# (header, run-level metric, definition)
COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("Mean Acc", "last_acc", "mean final accuracy over the order's understanding (QA) tasks."),
    ("Gen before", "gen_before", "generation score of the stage-0 model, before any understanding stage."),
    ("Gen after", "gen_after", "generation score after the final stage."),
    (
        "Intra-modal forgetting",
        "forgetting_acc",
        "mean over the order's understanding tasks except the last trained of (max accuracy at an earlier "
        "stage − final accuracy); higher = more forgotten.",
    ),
    (
        "Inter-modal forgetting",
        "inter_forgetting",
        "Gen before − Gen after: the generation ability lost to understanding training (points).",
    ),
)


def has_generation(run: Run) -> bool:
    return "inter_forgetting" in run.metrics


def _params_unit(runs: Sequence[Run]) -> tuple[str, float]:
    """Thousands for the embedded backbones, millions for real ones."""
    largest = max((run.metrics.get("trainable_params", NAN) for run in runs), default=NAN)
    return ("M", 1e6) if not math.isnan(largest) and largest >= 1e6 else ("K", 1e3)


def _generation_legend(run: Run, params_header: str, joint_methods: list[str]) -> list[tuple[str, str]]:
    drawing = ", ".join(t for t in run.extra_tasks if run.families[t] == "generation")
    legend = [
        ("task (metric)", "accuracy on the understanding task after the final stage, in %."),
        *((header, text) for header, _, text in COLUMNS),
        (
            "generation score",
            f"gen_score on {drawing}: % of the images generated for its test prompts whose colour, shape and "
            "position, as the suite's judge reads them, all match the prompt.",
        ),
        (params_header, "parameters the method trains in the final stage."),
        ("mean ± std", f"over seeds (sample std, ddof=1); {UNDEFINED} = undefined."),
    ]
    if joint_methods:
        legend.append((", ".join(joint_methods), "multitask training on all tasks at once: one stage."))
    legend.append((BASE_LABEL, "the model every method starts from: what it could draw before continual training."))
    return legend


def build_generation_table(runs: Sequence[Run], method_order: Sequence[str] | None) -> MethodTable:
    """Rows = methods in ``method_order``, then the stage-0 model; columns = understanding tasks, their mean,
    generation before/after, intra- and inter-modal forgetting, trainable parameters."""
    first = runs[0]
    unit, scale = _params_unit(runs)
    params_header = f"Trainable params ({unit})"
    understanding = first.tasks_of(QA)
    methods = in_order((run.method for run in runs), method_order)
    rows = []
    for method in methods:
        members = [run for run in runs if run.method == method]
        cells = [seed_stat([run.final(task) for run in members]) for task in understanding]
        cells += [seed_stat([run.metrics.get(metric, NAN) for run in members]) for _, metric, _ in COLUMNS]
        trainable = seed_stat([run.metrics.get("trainable_params", NAN) / scale for run in members])
        cells.append(Stat(trainable.mean, NAN, trainable.n))  # the same for every seed
        rows.append(TableRow(method, tuple(cells), tuple(run.seed for run in members)))
    base = [NAN] * (len(understanding) + len(COLUMNS) + 1)
    base[len(understanding) + [metric for _, metric, _ in COLUMNS].index("gen_before")] = first.metrics["gen_before"]
    rows.append(fixed_row(BASE_LABEL, base))
    joint_methods = joint_trained(runs, methods)
    return MethodTable(
        suite=first.suite,
        order=first.order,
        backbone=first.backbone,
        tasks=first.tasks,
        headers=(*(task_header(first, task) for task in understanding), *(h for h, _, _ in COLUMNS), params_header),
        rows=tuple(rows),
        legend=tuple(_generation_legend(first, params_header, joint_methods)),
        title=TITLE,
        label="generation",
    )
