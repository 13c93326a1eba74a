"""Each run's accuracy matrix as a heatmap: rows after each stage, columns every evaluated task."""

from __future__ import annotations

import math

import matplotlib
import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from mmcl.analyses.figures import DPI
from mmcl.analyses.runs import Run
from mmcl.analyses.tables import DAGGER, UNDEFINED, task_header

VMIN, VMAX = 0.0, 100.0  # scores are percentages / CIDEr ×100; one fixed scale makes runs comparable


def primary_matrix(run: Run) -> np.ndarray:
    """(stage, task) scores in each task's primary metric, columns in :attr:`Run.report_tasks` order."""
    return np.array(
        [
            [run.score(run.primary_metric[task], stage, task) for task in run.report_tasks]
            for stage in range(len(run.stages))
        ],
        dtype=float,
    ).reshape(len(run.stages), len(run.report_tasks))


def _row_labels(run: Run) -> list[str]:
    return [f"{i + 1}: {task}" if not run.is_joint else task for i, task in enumerate(run.stages)]


def heatmap_figure(run: Run) -> Figure:
    """The run's matrix (rows = stages, columns = evaluated tasks), annotated; just-trained cells boxed."""
    values = primary_matrix(run)
    n_rows, n_cols = values.shape
    fig = Figure(figsize=(1.2 * n_cols + 3.0, 0.55 * n_rows + 2.2), dpi=DPI)
    ax = fig.add_subplot()
    cmap = matplotlib.colormaps["viridis"].with_extremes(bad="#dddddd")
    image = ax.imshow(np.ma.masked_invalid(values), cmap=cmap, vmin=VMIN, vmax=VMAX, aspect="auto")
    for (row, col), value in np.ndenumerate(values):
        dark_cell = not math.isnan(value) and value < (VMIN + VMAX) / 2
        text = UNDEFINED if math.isnan(value) else f"{value:.1f}"
        ax.text(col, row, text, ha="center", va="center", fontsize=8, color="white" if dark_cell else "black")
    if not run.is_joint:
        for row, task in enumerate(run.stages):
            col = run.report_tasks.index(task)
            ax.add_patch(Rectangle((col - 0.5, row - 0.5), 1, 1, fill=False, edgecolor="red", linewidth=1.5))
    ax.set_xticks(
        range(n_cols),
        [task_header(run, task, sep="\n") for task in run.report_tasks],
        fontsize=8,
        rotation=30,
        ha="right",
        rotation_mode="anchor",
    )
    ax.set_yticks(range(n_rows), _row_labels(run), fontsize=8)
    notes = [] if run.is_joint else ["red box: task trained at that stage"]
    notes += [f"{DAGGER} not in the training sequence"] if run.extra_tasks else []
    notes += [f"{UNDEFINED}: not scored (evaluation.cells: needed)"] if np.isnan(values).any() else []
    ax.set_xlabel("\n".join(["evaluated task (primary metric)", "; ".join(notes)]).strip())
    ax.set_ylabel("after stage")
    ax.set_title(f"{run.method} · seed {run.seed}\n{run.suite} · order {run.order} · {run.backbone}", fontsize=10)
    fig.colorbar(image, ax=ax, label="score (0–100)")
    fig.tight_layout()
    return fig
