"""MoDE's Figure 5: histograms of the per-tensor cosine between the text- and image-loss gradients.

One panel per method, from its ``mmcl gradients`` file. Only tensors both losses reach have a cosine
(a conflict where it is negative); how many tensors only one loss reaches is said in each panel.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from mmcl.analyses.figures import DPI, method_colors
from mmcl.analyses.runs import in_order

BINS = np.linspace(-1.0, 1.0, 21)


def reached_by(tensors: dict) -> tuple[list[float], int, int]:
    """The cosines of the tensors both losses reach, and how many only the text / image loss reaches."""
    both = [t["cosine"] for t in tensors.values() if t["text_norm"] > 0 and t["image_norm"] > 0]
    text = sum(t["text_norm"] > 0 and not t["image_norm"] > 0 for t in tensors.values())
    image = sum(t["image_norm"] > 0 and not t["text_norm"] > 0 for t in tensors.values())
    return both, text, image


def gradient_conflict_figure(gradients: Mapping[str, dict], methods: Sequence[str]) -> Figure:
    """``gradients``: method -> its ``mmcl gradients`` JSON (one suite, backbone and stage); ``methods``:
    the report's methods in order (panel order and colours, as in the report's other figures; methods not
    in it follow alphabetically)."""
    present = in_order(gradients, methods)
    colors = method_colors(in_order([*methods, *gradients], methods))  # the report's colours, others after
    cols = min(len(present), 3)
    rows = -(-len(present) // cols)
    fig = Figure(figsize=(3.6 * cols, 3.0 * rows + 0.8), dpi=DPI, layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).flatten()
    for ax, method in zip(axes, present, strict=False):
        both, text, image = reached_by(gradients[method]["tensors"])
        total = len(gradients[method]["tensors"])
        if both:
            ax.hist(both, bins=BINS, color=colors[method], edgecolor="white")
            ax.yaxis.set_major_locator(MaxNLocator(integer=True))  # counts of tensors
            negative = sum(cosine < 0 for cosine in both)
            ax.set_title(f"{method}: {len(both)} of {total} tensors reached by both\n{negative} with cosine < 0")
        else:
            ax.text(0, 0.5, "no tensor reached by both losses:\nno first-order conflict", ha="center", va="center")
            ax.set_yticks([])
            ax.set_title(f"{method}: 0 of {total} tensors reached by both\n")
        ax.title.set_fontsize(9)
        ax.axvline(0.0, color="grey", linewidth=0.8, linestyle="--")
        ax.set_xlim(-1, 1)
        ax.set_xlabel(f"cosine; one loss only: {text} text, {image} image", fontsize=8)
        ax.set_ylabel("tensors")
    for ax in axes[len(present) :]:
        ax.set_visible(False)
    first = gradients[present[0]]
    fig.suptitle(
        f"{first['suite']} · {first['backbone']} · after {first['stage']} · seed {first['seed']}\n"
        f"per trained tensor, cosine of the text-loss ({first['text_task']}) and image-loss "
        f"({', '.join(first['image_tasks'])}) gradients",
        fontsize=9,
    )
    return fig
