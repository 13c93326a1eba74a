"""Intra- and inter-modal forgetting (MoDE), for suites whose stage-0 model draws: the generation score
before continual training (the stage-0 model's) and after the last stage, their difference, and the
trainable parameters of the last stage; its table and the grid of generated images."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from mmcl.analyses import ANALYSES
from mmcl.analyses.base import Analysis, ReportContext, RunScores, links_section
from mmcl.analyses.runs import Group, Run
from mmcl.config.schema import Params
from mmcl.core import paths
from mmcl.core.io import read_json
from mmcl.data.families import generates_images, generation_tasks

FILES = {
    "Table": "generation.md",
    "CSV": "generation.csv",
    "LaTeX": "generation.tex",
    "Generated images": "generated.png",
}


def generation_summary(primary: list[list[float]], base: list[float], columns: list[int]) -> dict[str, float]:
    """Mean generation score of the stage-0 model and after the last stage, and the drop between them."""
    before = sum(base[j] for j in columns) / len(columns)
    after = sum(primary[-1][j] for j in columns) / len(columns)
    return {"gen_before": before, "gen_after": after, "inter_forgetting": before - after}


@ANALYSES.register("generation")
class Generation(Analysis):
    rank = 20

    def aggregate_inputs(self, params: Params, suite: str, backbone: str, stage_scores: list[str]) -> list[str]:
        """The last stage's checkpoint, whose meta gives the trainable parameters of the table."""
        if not stage_scores or not generation_tasks(params.suites[suite]):
            return []
        return [str(paths.checkpoint_beside(stage_scores[-1]))]

    def aggregate(self, run: RunScores):
        kinds = run.suite.tasks
        # lm-evaluation-harness columns are not suite tasks, and none of them draws.
        drawing = [
            j
            for j, t in enumerate(run.eval_tasks)
            if t in kinds and t not in run.tasks and generates_images(kinds[t].family)
        ]
        if not drawing:
            return {}, {}
        metrics = generation_summary(run.primary, run.base, drawing)
        evaluations = [run.zeroshot_scores, *run.stage_scores]
        entries = {"generated": {"stage0": str(evaluations[0].parent), "final": str(evaluations[-1].parent)}}
        if run.stage_scores:
            meta = read_json(paths.stage_meta(paths.checkpoint_beside(run.stage_scores[-1])))
            metrics["trainable_params"] = meta.get("trainable_parameters", math.nan)
        return metrics, entries

    def applies(self, runs: Sequence[Run]) -> bool:
        return "inter_forgetting" in runs[0].metrics

    def write_group(self, directory: Path, runs: Sequence[Run], context: ReportContext) -> None:
        from mmcl.analyses.figures import save_png
        from mmcl.analyses.generation.figures import generated_grid_figure
        from mmcl.analyses.generation.table import build_generation_table
        from mmcl.analyses.tables import write_table

        write_table(directory, "generation", build_generation_table(runs, context.methods, context.compare_with))
        save_png(generated_grid_figure(runs, context.methods), directory / "generated.png")

    def index_section(self, groups: Sequence[Group], written: list) -> list[str]:
        return links_section(
            "Intra- and inter-modal forgetting",
            "Suites whose stage-0 model generates images: per method, the final understanding accuracy, the "
            "generation score before and after continual training, intra- and inter-modal forgetting and the "
            "trainable parameters; and the same prompts drawn by the stage-0 model and by each method (figure).",
            groups,
            FILES,
        )
