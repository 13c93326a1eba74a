"""Linguistic forgetting and the VL score of the continual-LLaVA study (Srivastava et al. 2024).

Notation as in ``mmcl.metrics.continual``: ``R[t][j]`` is the score (in points, e.g. accuracy %) on
column ``j`` after stage ``t`` (0-based rows), ``b[j]`` the base model's score (stage 0, before any
continual stage). Column sets: ``V``, the order's vision-language tasks, with ``V_t`` those trained
by stage ``t``; ``U``, the NLU tasks; ``G``, the NLG tasks. ``H`` is the harmonic mean,
``H(x_1..x_n) = n / sum_i 1/x_i``, which is 0 when any ``x_i`` is 0 and undefined (NaN) over no
values or when any value is missing (NaN).

- VL score after stage t: ``vl(t) = H(R[t][j] : j in V_t)``; the run's ``vl_score`` is ``vl(T-1)``,
  over every VL task of the order.
- NLU forgetting after stage t: ``delta_nlu(t) = H(b[j] : j in U) - H(R[t][j] : j in U)``, and
  ``delta_nlg(t)`` the same over ``G``; positive = forgetting, in points. The run's ``nlu_delta`` and
  ``nlg_delta`` are the values after the last stage.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

NAN = float("nan")


def harmonic_mean(values: Iterable[float]) -> float:
    """``n / sum 1/x``; 0 if any value is 0; NaN over no values or if any value is NaN."""
    values = list(values)
    if not values or any(math.isnan(v) for v in values):
        return NAN
    if any(v < 0 for v in values):
        raise ValueError(f"a harmonic mean needs scores >= 0, got {values}")
    if any(v == 0 for v in values):
        return 0.0
    return len(values) / sum(1 / v for v in values)


def linguistic_delta(base: Sequence[float], current: Sequence[float]) -> float:
    """``H(base) - H(current)``: how many points the harmonic mean over a measure's tasks dropped."""
    return harmonic_mean(base) - harmonic_mean(current)


def linguistic_summary(
    rows: Sequence[Sequence[float]],
    base: Sequence[float],
    vl_columns: Sequence[Sequence[int]],
    measures: dict[str, Sequence[int]],
    stage_numbers: Sequence[int],
) -> dict[str, float]:
    """Per-stage and final VL score and linguistic deltas of one run.

    ``rows[k]`` is the scores after the k-th evaluated stage, numbered ``stage_numbers[k]`` (1-based),
    ``vl_columns[k]`` the VL columns trained by then, ``measures`` e.g. ``{"nlu": [...], "nlg": [...]}``
    (a measure with no columns is left out). Keys: ``vl_score``, ``<measure>_delta``, and each with a
    ``_stage<n>`` suffix for every stage.
    """
    summary = {}
    for row, columns, number in zip(rows, vl_columns, stage_numbers, strict=True):
        summary[f"vl_score_stage{number}"] = harmonic_mean(row[j] for j in columns)
        for name, measure in measures.items():
            if measure:
                summary[f"{name}_delta_stage{number}"] = linguistic_delta(
                    [base[j] for j in measure], [row[j] for j in measure]
                )
    last = stage_numbers[-1]
    summary["vl_score"] = summary[f"vl_score_stage{last}"]
    for name, measure in measures.items():
        if measure:
            summary[f"{name}_delta"] = summary[f"{name}_delta_stage{last}"]
    return summary
