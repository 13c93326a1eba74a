"""Linguistic forgetting (the continual-LLaVA study): the VL score and the NLU/NLG deltas after every
stage and after the last (``mmcl.metrics.linguistic``), for suites with text tasks whose family has a
``linguistic`` measure, or backbones measured by lm-evaluation-harness (``lm_eval``); its table, per-stage
figure and NLG Δ against backbone size."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from mmcl.analyses import ANALYSES
from mmcl.analyses.base import Analysis, ReportContext, RunScores, links_section
from mmcl.analyses.runs import Group, Run, in_order, safe_name
from mmcl.config.schema import MEASURES, Params
from mmcl.core import paths
from mmcl.data import TASK_FAMILIES
from mmcl.metrics.linguistic import linguistic_summary

FILES = {
    "Table": "linguistic.md",
    "CSV": "linguistic.csv",
    "LaTeX": "linguistic.tex",
    "Per stage": "linguistic_stages.png",
}


@ANALYSES.register("linguistic")
class Linguistic(Analysis):
    rank = 10

    def aggregate_inputs(self, params: Params, suite: str, backbone: str, stage_scores: list[str]) -> list[str]:
        """lm-eval's scores beside each evaluation of the run and of the base model, for a backbone that asks
        for them (``mmcl.jobs.aggregate`` reads their tasks as more columns)."""
        if params.backbones[backbone].lm_eval is None:
            return []
        return [str(paths.lm_eval_beside(scores)) for scores in [*stage_scores, paths.base_scores(suite, backbone)]]

    def aggregate(self, run: RunScores):
        kinds, tasks = run.suite.tasks, run.tasks
        if run.lm_eval is not None:
            measures = {
                measure: [run.eval_tasks.index(t) for t in getattr(run.lm_eval, measure)] for measure in MEASURES
            }
        else:
            measures = {
                measure: [
                    j
                    for j, t in enumerate(run.eval_tasks)
                    if kinds[t].modality == "text" and TASK_FAMILIES.get(kinds[t].family).linguistic == measure
                ]
                for measure in MEASURES
            }
        if not any(measures.values()):
            return {}, {}
        vl = [j for j, t in enumerate(tasks) if kinds[t].modality != "text"]
        # Row k of a sequential run (and of the untrained one) follows stage k + 1; a joint run's one row
        # follows the last stage, having trained every task.
        numbers = [len(tasks)] if run.schedule == "joint" else list(range(1, len(run.rows) + 1))
        trained = [[j for j in vl if j < number] for number in numbers]
        metrics = linguistic_summary(run.primary, run.base, trained, measures, numbers)
        # The tasks behind each harmonic mean, so that reports can show the base model's own scores.
        columns = {"vl": vl} | {name: js for name, js in measures.items() if js}
        return metrics, {"measures": {name: [run.eval_tasks[j] for j in js] for name, js in columns.items()}}

    def applies(self, runs: Sequence[Run]) -> bool:
        return bool(runs[0].measures)

    def write_group(self, directory: Path, runs: Sequence[Run], context: ReportContext) -> None:
        from mmcl.analyses.figures import save_png
        from mmcl.analyses.linguistic.figures import stage_curves_figure
        from mmcl.analyses.linguistic.table import build_linguistic_table
        from mmcl.analyses.tables import write_table

        write_table(directory, "linguistic", build_linguistic_table(runs, context.methods, context.compare_with))
        save_png(stage_curves_figure(runs, context.methods), directory / "linguistic_stages.png")

    def write_report(self, out_dir: Path, groups: dict[Group, list[Run]], context: ReportContext) -> list[Path]:
        """NLG Δ against backbone, one figure per (suite, order) with NLG tasks; returns their paths in out_dir."""
        from mmcl.analyses.figures import save_png
        from mmcl.analyses.linguistic.figures import nlg_by_backbone_figure

        by_order: dict[tuple[str, str], list[Run]] = {}
        for (suite, order, _), members in groups.items():
            if self.applies(members) and "nlg" in members[0].measures:
                by_order.setdefault((suite, order), []).extend(members)
        written = []
        for (suite, order), runs in by_order.items():
            backbones = in_order((run.backbone for run in runs), context.backbones)
            path = Path(safe_name(suite), safe_name(order), "nlg_delta_by_backbone.png")
            save_png(nlg_by_backbone_figure(runs, backbones, context.methods), out_dir / path)
            written.append(path)
        return written

    def index_section(self, groups: Sequence[Group], written: list) -> list[str]:
        lines = links_section(
            "Linguistic forgetting",
            "Suites with NLU/NLG text tasks: per method, the VL score (harmonic mean over the VL tasks) and the "
            "NLU/NLG Δ (base model − after the final stage, in points; positive = forgetting), with the base "
            "model's own scores as a reference row; and the same after every stage (figure).",
            groups,
            FILES,
        )
        if written:
            links = ", ".join(f"[{path.parent.as_posix()}]({path.as_posix()})" for path in written)
            lines += ["", f"NLG Δ after the final stage against backbone size, per suite/order: {links}."]
        return lines
