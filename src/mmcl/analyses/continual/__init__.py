"""The continual-learning metrics of every run (Last, Avg, forgetting, BWT, FWT, plasticity; per summarised
family and over all tasks) and the report every group gets: the main table, each run's heatmap, and
per-method learning curves."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from mmcl.analyses import ANALYSES
from mmcl.analyses.base import Analysis, ReportContext, RunScores, links_table
from mmcl.analyses.runs import Group, Run, in_order, safe_name
from mmcl.data.families import summaries
from mmcl.metrics.continual import forgetting, summarize

TABLE_FILES = {"Table": "table.md", "CSV": "table.csv", "LaTeX": "table.tex"}


def nan_rows(values) -> list[list[float]]:
    return [[math.nan if v is None else v for v in row] for row in values]


@ANALYSES.register("continual")
class Continual(Analysis):
    rank = 0

    def aggregate(self, run: RunScores):
        """``<metric>_<suffix>`` over the order's tasks of each summarised family (``TaskFamily.summary``) in
        its metric, and ``forgetting`` over every task of the order in its primary metric (points)."""
        order = len(run.tasks)
        metrics = {}
        for suffix, (family, summary) in summaries().items():
            subset = [i for i, t in enumerate(run.tasks) if run.suite.tasks[t].family == family]
            if not subset or summary.metric not in run.matrix:
                continue
            square = nan_rows([row[:order] for row in run.matrix[summary.metric]])
            values = summarize(square, nan_rows([run.baseline[summary.metric][:order]])[0], subset)
            metrics.update({f"{name}_{suffix}": value for name, value in values.items()})
        metrics["forgetting"] = forgetting([row[:order] for row in run.primary])
        if run.schedule == "none":  # never trained, so nothing learned to forget
            metrics = {k: math.nan if k.startswith(("forgetting", "bwt")) else v for k, v in metrics.items()}
        return metrics, {}

    def applies(self, runs: Sequence[Run]) -> bool:
        return True

    def write_group(self, directory: Path, runs: Sequence[Run], context: ReportContext) -> None:
        from mmcl.analyses.continual.curves import curves_frame
        from mmcl.analyses.continual.heatmaps import heatmap_figure
        from mmcl.analyses.continual.table import build_table
        from mmcl.analyses.figures import save_png
        from mmcl.analyses.tables import write_table
        from mmcl.analyses.tidy import frame_csv
        from mmcl.core.io import write_text

        write_table(
            directory,
            "table",
            build_table(runs, context.baselines.get(runs[0].suite), context.methods, context.compare_with),
        )
        for run in runs:
            save_png(heatmap_figure(run), directory / "heatmaps" / f"{safe_name(run.method)}_seed{run.seed}.png")
        for method in in_order((run.method for run in runs), context.methods):
            sequential = [run for run in runs if run.method == method and not run.is_joint]
            if sequential:
                write_text(directory / "curves" / f"{safe_name(method)}.csv", frame_csv(curves_frame(sequential)))

    def index_section(self, groups: Sequence[Group], written: list) -> list[str]:
        return [
            "",
            "One table per suite / task order / backbone: final per-task scores, averages, forgetting and "
            "backward transfer of every method (each table ends with the definitions of its columns).",
            "",
            *links_table(groups, TABLE_FILES),
            "",
            "Each table's directory also holds every run's accuracy-matrix heatmap (`heatmaps/`) and "
            "per-method learning curves (`curves/`).",
        ]
