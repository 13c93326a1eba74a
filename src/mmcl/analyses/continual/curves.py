"""Learning curves: the average score over the tasks seen so far, after each stage, per method
(``curves/<method>.csv``, the plot ``dvc plots show`` draws)."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from mmcl.analyses.runs import Run, mean_or_nan
from mmcl.analyses.tidy import DECIMALS

SUFFIXES = ("acc", "cider")  # one column per summary (``TaskFamily.summary``): avg_<suffix>_seen
COLUMNS = ["stage", "stage_task", *(f"avg_{suffix}_seen" for suffix in SUFFIXES)]


def _seen_average(run: Run, stage: int, suffix: str) -> float:
    """Mean after ``stage`` over the order's tasks of the ``suffix`` summary trained up to then (NaN if none)."""
    seen = set(run.stages[: stage + 1])
    tasks, metric = run.summarised(suffix)
    return mean_or_nan(run.score(metric, stage, t) for t in tasks if t in seen)


def curves_frame(runs: Sequence[Run]) -> pd.DataFrame:
    """Average score over the tasks seen so far, per stage, mean over one method's sequential runs."""
    rows = [
        (
            stage + 1,
            stage_task,
            *(round(mean_or_nan(_seen_average(run, stage, suffix) for run in runs), DECIMALS) for suffix in SUFFIXES),
        )
        for stage, stage_task in enumerate(runs[0].stages)
    ]
    return pd.DataFrame(rows, columns=COLUMNS)
