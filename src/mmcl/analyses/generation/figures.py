"""MoDE's picture of inter-modal forgetting: the same prompts drawn by the stage-0 model and by each
method after the final stage, so that a reader sees what understanding training did to generation.

Reads the evaluations a run file names (``Run.generated``): ``generated/<task>/<id>.png`` and
``predictions/<task>.jsonl`` (what the judge read in each picture) in each evaluation directory.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from PIL import Image

from mmcl.analyses.figures import DPI
from mmcl.analyses.generation.table import BASE_LABEL, drawn_tasks
from mmcl.analyses.runs import Run
from mmcl.data.families.multiple_choice import is_gold

PROMPTS = 8  # columns: the first test prompts, in the evaluation's order
RIGHT, WRONG = "#1a7f37", "#cf222e"


def _readings(eval_dir: Path, task: str) -> list[dict]:
    lines = (eval_dir / "predictions" / f"{task}.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def generated_grid_figure(runs: Sequence[Run], methods: Sequence[str], prompts: int = PROMPTS) -> Figure:
    """Rows: the stage-0 model, then each method's first seed after the final stage; columns: the first
    ``prompts`` test prompts of the suite's first generation task, titled with what they ask for. Under
    each picture, what the judge reads in it: green when it matches the prompt, red when not."""
    first = runs[0]
    task = drawn_tasks(first)[0]
    shown = [(BASE_LABEL, Path(first.generated["stage0"]))]
    for method in methods:
        run = min((r for r in runs if r.method == method), key=lambda r: r.seed, default=None)
        if run is not None:
            shown.append((f"{method} (seed {run.seed})", Path(run.generated["final"])))
    columns = [row["id"] for row in _readings(shown[0][1], task)[:prompts]]
    fig = Figure(figsize=(1.3 * len(columns) + 1.6, 1.55 * len(shown) + 0.8), dpi=DPI)
    axes = np.atleast_2d(fig.subplots(len(shown), len(columns), squeeze=False))
    for row, (label, eval_dir) in enumerate(shown):
        readings = {r["id"]: r for r in _readings(eval_dir, task)}
        for col, sample_id in enumerate(columns):
            ax, reading = axes[row, col], readings[sample_id]
            ax.imshow(Image.open(eval_dir / "generated" / task / f"{sample_id}.png").convert("RGB"))
            ax.set_xticks([])
            ax.set_yticks([])
            right = is_gold(reading["prediction"], reading["answers"])
            ax.set_xlabel(reading["prediction"], fontsize=6, color=RIGHT if right else WRONG)
            if row == 0:
                ax.set_title(reading["answers"][0], fontsize=7)
            if col == 0:
                ax.set_ylabel(label, fontsize=7)
    fig.suptitle(
        f"{task} · {first.suite} · order {first.order} · {first.backbone}\n"
        "under each picture, what the judge reads (green = as asked)",
        fontsize=8,
    )
    fig.tight_layout()
    return fig
