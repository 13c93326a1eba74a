"""What every analysis's figures share: drawn on a bare Agg ``Figure`` (no pyplot: no display, no global
state), one colour per method across a report, and written with :func:`save_png`."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib
from matplotlib.figure import Figure

from mmcl.core.io import atomic_path

DPI = 100


def method_colors(methods: Sequence[str]) -> dict[str, tuple]:
    """A fixed colour per method, by its rank in the report's method order."""
    palette = matplotlib.colormaps["tab10"]
    return {method: palette(i % palette.N) for i, method in enumerate(methods)}


def save_png(fig: Figure, path: Path) -> None:
    """Write a figure's PNG atomically, without the timestamp/version metadata that breaks byte-identity."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", metadata={"Software": None})
