"""MoDE's table: understanding after the final stage, and what continual understanding training cost the
model's image generation, per method.

Only for runs of suites with generation tasks outside the order (``mmcl.analyses.generation``), whose run
files carry ``gen_before``/``gen_after``/``inter_forgetting``/``trainable_params`` (``mmcl.jobs.aggregate``);
rendered by the main table's Markdown/CSV/LaTeX writers.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from mmcl.analyses.runs import NAN, Run, in_order
from mmcl.analyses.tables import (
    MethodTable,
    TableRow,
    compared,
    fixed_row,
    joint_trained,
    method_rows,
    task_header,
    uncertainty_legend,
)
from mmcl.analyses.tidy import Stat, seed_stat
from mmcl.data.families import generates_images

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


def drawn_tasks(run: Run) -> list[str]:
    """The image-generation tasks outside the run's order: what continual understanding training may cost."""
    return [t for t in run.extra_tasks if generates_images(run.families[t])]


def _params_unit(runs: Sequence[Run]) -> tuple[str, float]:
    """Thousands for the embedded backbones, millions for real ones."""
    largest = max((run.metrics.get("trainable_params", NAN) for run in runs), default=NAN)
    return ("M", 1e6) if not math.isnan(largest) and largest >= 1e6 else ("K", 1e3)


def _generation_legend(
    run: Run, params_header: str, rows: list[TableRow], compare_with: str | None, joint_methods: list[str]
) -> list[tuple[str, str]]:
    drawing = ", ".join(drawn_tasks(run))
    legend = [
        ("task (metric)", "accuracy on the understanding task after the final stage, in %."),
        *((header, text) for header, _, text in COLUMNS),
        (
            "generation score",
            f"gen_score on {drawing}: % of the images generated for its test prompts whose colour, shape and "
            "position, as the suite's judge reads them, all match the prompt.",
        ),
        (params_header, "parameters the method trains in the final stage."),
        *uncertainty_legend(rows, compare_with),
    ]
    if joint_methods:
        legend.append((", ".join(joint_methods), "multitask training on all tasks at once: one stage."))
    legend.append((BASE_LABEL, "the model every method starts from: what it could draw before continual training."))
    return legend


def build_generation_table(
    runs: Sequence[Run], method_order: Sequence[str] | None, compare_with: str | None = None
) -> MethodTable:
    """Rows = methods in ``method_order``, then the stage-0 model; columns = understanding tasks, their mean,
    generation before/after, intra- and inter-modal forgetting, trainable parameters. What a method changes
    (all but the tasks, Gen before and the parameters) is tested against the ``compare_with`` row."""
    first = runs[0]
    unit, scale = _params_unit(runs)
    params_header = f"Trainable params ({unit})"
    understanding, _ = first.summarised("acc")
    methods = in_order((run.method for run in runs), method_order)

    def cells(members: list[Run]) -> list[Stat]:
        found = [seed_stat([run.final(task) for run in members]) for task in understanding]
        found += [seed_stat([run.metrics.get(metric, NAN) for run in members]) for _, metric, _ in COLUMNS]
        trainable = seed_stat([run.metrics.get("trainable_params", NAN) / scale for run in members])
        return [*found, Stat(trainable.mean, NAN, trainable.n)]  # the same for every seed

    rows = method_rows(runs, methods, cells)
    base = [NAN] * (len(understanding) + len(COLUMNS) + 1)
    base[len(understanding) + [metric for _, metric, _ in COLUMNS].index("gen_before")] = first.metrics["gen_before"]
    rows.append(fixed_row(BASE_LABEL, base))
    joint_methods = joint_trained(runs, methods)
    headers = (*(task_header(first, task) for task in understanding), *(h for h, _, _ in COLUMNS), params_header)
    tested = [len(understanding) + i for i, (_, metric, _) in enumerate(COLUMNS) if metric != "gen_before"]
    rows = compared(rows, compare_with, tested)
    legend = _generation_legend(first, params_header, rows, compare_with, joint_methods)
    return MethodTable.of(first, headers, rows, legend, title=TITLE, label="generation", baseline=compare_with)
