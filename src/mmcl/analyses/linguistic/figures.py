"""The continual-LLaVA study's figures: VL score and linguistic Δ per stage, and NLG Δ across backbones.

Both show the mean over seeds with the sample std (a band, or error bars); one line per method, in
the same colour in every figure of a report. Written with :func:`mmcl.analyses.figures.save_png`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure

from mmcl.analyses.figures import DPI, method_colors
from mmcl.analyses.linguistic.table import measures_of
from mmcl.analyses.runs import NAN, Run
from mmcl.analyses.tidy import seed_stat

PANEL_LABELS = {
    "vl": "VL score (points)",
    "nlu": "NLU Δ (points; + = forgetting)",
    "nlg": "NLG Δ (points; + = forgetting)",
}


def _stats(values_per_point: list[list[float]]) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std over seeds at each point; std NaN where fewer than two seeds are defined."""
    stats = [seed_stat(values) for values in values_per_point]
    return np.array([s.mean for s in stats]), np.array([s.std for s in stats])


def stage_curves_figure(runs: Sequence[Run], methods: Sequence[str]) -> Figure:
    """Panels VL score / NLU Δ / NLG Δ after each stage (x) of one (suite, order, backbone)'s runs.

    A joint run has values after the last stage only: one point there. ``methods``: the report's methods
    in order (they fix the colours); those without runs here are skipped.
    """
    first = runs[0]
    measures = measures_of(first)
    stages = np.arange(1, len(first.tasks) + 1)  # stage n trains the order's n-th task
    colors = method_colors(methods)
    fig = Figure(figsize=(4.2 * len(measures), 4.2), dpi=DPI, layout="constrained")
    axes = fig.subplots(1, len(measures), squeeze=False)[0]
    for ax, (measure, metric, header) in zip(axes, measures, strict=True):
        for method in methods:
            members = [run for run in runs if run.method == method]
            if not members:
                continue
            mean, std = _stats([[run.metrics.get(f"{metric}_stage{n}", NAN) for run in members] for n in stages])
            ax.plot(stages, mean, marker="o", color=colors[method], label=method)
            if not np.isnan(std).all():
                ax.fill_between(stages, mean - std, mean + std, color=colors[method], alpha=0.15, linewidth=0)
        if measure != "vl":
            ax.axhline(0.0, color="grey", linewidth=0.8, linestyle="--")
        ax.set_xticks(stages, [f"{n}: {task}" for n, task in zip(stages, first.tasks, strict=True)], fontsize=8)
        ax.set_xlabel("after stage")
        ax.set_ylabel(PANEL_LABELS[measure])
        ax.set_title(header, fontsize=10)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=min(len(labels), 4), fontsize=8)
    fig.suptitle(f"{first.suite} · order {first.order} · {first.backbone}: mean over seeds, band ± std", fontsize=10)
    return fig


def nlg_by_backbone_figure(runs: Sequence[Run], backbones: Sequence[str], methods: Sequence[str]) -> Figure:
    """NLG Δ after the final stage (y) per backbone (x, in ``backbones`` order) of one (suite, order).

    A method without a run on some backbone leaves a gap there; ``methods`` as in :func:`stage_curves_figure`.
    """
    first = runs[0]
    colors = method_colors(methods)
    x = np.arange(len(backbones), dtype=float)
    fig = Figure(figsize=(max(6.0, 1.6 * len(backbones) + 4.0), 4.2), dpi=DPI, layout="constrained")
    ax = fig.add_subplot()
    present = [method for method in methods if any(run.method == method for run in runs)]
    for i, method in enumerate(present):
        values = [[run.metrics.get("nlg_delta", NAN) for run in runs if (run.backbone, run.method) == (b, method)]
                  for b in backbones]  # fmt: skip
        mean, std = _stats(values)
        offset = 0.04 * (i - (len(present) - 1) / 2)  # side by side, so that error bars stay readable
        ax.errorbar(
            x + offset, mean, yerr=np.nan_to_num(std), marker="o", capsize=3, color=colors[method], label=method
        )
    ax.axhline(0.0, color="grey", linewidth=0.8, linestyle="--")
    ax.set_xticks(x, list(backbones))
    ax.set_xlim(-0.5, len(backbones) - 0.5)
    ax.set_xlabel("backbone (grid order, by size)")
    ax.set_ylabel(PANEL_LABELS["nlg"])
    ax.set_title(
        f"{first.suite} · order {first.order}\nNLG Δ after the final stage, mean ± std over seeds", fontsize=10
    )
    fig.legend(*ax.get_legend_handles_labels(), loc="outside right upper", fontsize=8)
    return fig
