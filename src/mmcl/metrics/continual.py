"""Continual-learning metrics derived from an accuracy matrix.

Notation (0-indexed): ``R[t][i]`` is the score on task ``i`` after training stage ``t``. Rows are the
stages 0..T-1 and columns the T tasks in training order, so task ``i`` is learned at stage ``i``.
``b[i]`` is the score of the zero-shot (base) model on task ``i``. ``S`` is the set of task columns a
metric is restricted to (default: all of them).

Two matrix shapes are accepted:

- ``(T, T)``: the full matrix of a sequential run.
- ``(1, T)`` with ``T > 1``: only the final row is known (a joint/multitask run, or a run evaluated
  only at the end). Its single row is read as stage ``T-1``: ``last`` is defined, and every metric
  that needs an earlier stage is NaN.

A metric is NaN when it is undefined (empty ``S``, no qualifying task, e.g. forgetting of a
single-stage run) and when any cell it needs is NaN (missing): missing cells are never silently
averaged away, so two runs' numbers always cover the same tasks.
"""

from __future__ import annotations

import operator
from collections.abc import Iterable

import numpy as np
from numpy.typing import ArrayLike

NAN = float("nan")


def _matrix(R: ArrayLike) -> np.ndarray:
    matrix = np.asarray(R, dtype=float)
    if matrix.ndim != 2 or matrix.shape[1] == 0:
        raise ValueError(f"accuracy matrix must be 2-D (stages x tasks), got shape {matrix.shape}")
    stages, tasks = matrix.shape
    if stages not in (1, tasks):
        raise ValueError(f"accuracy matrix must have shape (T, T) or (1, T) for the final row only, got {matrix.shape}")
    return matrix


def _is_final_row_only(matrix: np.ndarray) -> bool:
    return matrix.shape[0] == 1 and matrix.shape[1] > 1


def _tasks(subset: Iterable[int] | None, n_tasks: int) -> list[int]:
    if subset is None:
        return list(range(n_tasks))
    tasks = sorted({operator.index(i) for i in subset})
    out_of_range = [i for i in tasks if not 0 <= i < n_tasks]
    if out_of_range:
        raise ValueError(f"subset columns {out_of_range} are outside 0..{n_tasks - 1}")
    return tasks


def _mean(values: list[float]) -> float:
    return float(np.mean(values)) if values else NAN


def last(R: ArrayLike, subset: Iterable[int] | None = None) -> float:
    """Final average ("Last", MFN): ``mean_{i in S} R[T-1][i]``."""
    matrix = _matrix(R)
    return _mean([matrix[-1, i] for i in _tasks(subset, matrix.shape[1])])


def average_incremental(R: ArrayLike, subset: Iterable[int] | None = None) -> float:
    """Average incremental score ("Avg", MAA).

    ``mean_{t : exists i in S, i <= t} [ mean_{i in S, i <= t} R[t][i] ]``: the mean over the stages
    that have learned at least one task of S of the mean score over the tasks of S learned so far.
    """
    matrix = _matrix(R)
    tasks = _tasks(subset, matrix.shape[1])
    if _is_final_row_only(matrix):
        return NAN
    stage_means = []
    for t in range(matrix.shape[0]):
        seen = [i for i in tasks if i <= t]
        if seen:
            stage_means.append(_mean([matrix[t, i] for i in seen]))
    return _mean(stage_means)


def forgetting(R: ArrayLike, subset: Iterable[int] | None = None) -> float:
    """Average forgetting (Chaudhry et al. 2018, max-based; positive = forgetting).

    ``mean_{i in S, i < T-1} ( max_{t in [i, T-2]} R[t][i] - R[T-1][i] )``. Since the max includes
    ``R[i][i]``, forgetting >= -BWT on the same tasks, with equality when every max is on the diagonal.
    """
    matrix = _matrix(R)
    n_tasks = matrix.shape[1]
    tasks = _tasks(subset, n_tasks)
    if _is_final_row_only(matrix):
        return NAN
    return _mean([matrix[i : n_tasks - 1, i].max() - matrix[-1, i] for i in tasks if i < n_tasks - 1])


def backward_transfer(R: ArrayLike, subset: Iterable[int] | None = None) -> float:
    """Backward transfer (GEM BWT; negative = forgetting).

    ``mean_{i in S, i < T-1} ( R[T-1][i] - R[i][i] )``.
    """
    matrix = _matrix(R)
    n_tasks = matrix.shape[1]
    tasks = _tasks(subset, n_tasks)
    if _is_final_row_only(matrix):
        return NAN
    return _mean([matrix[-1, i] - matrix[i, i] for i in tasks if i < n_tasks - 1])


def forward_transfer(R: ArrayLike, b: ArrayLike, subset: Iterable[int] | None = None) -> float:
    """Forward transfer (GEM FWT, against the zero-shot row): ``mean_{i in S, i >= 1} ( R[i-1][i] - b[i] )``.

    Needs the upper diagonal ``R[i-1][i]``, i.e. each task evaluated one stage before it is learned.
    """
    matrix = _matrix(R)
    n_tasks = matrix.shape[1]
    base = np.asarray(b, dtype=float)
    if base.shape != (n_tasks,):
        raise ValueError(f"zero-shot scores b must have shape ({n_tasks},), got {base.shape}")
    tasks = _tasks(subset, n_tasks)
    if _is_final_row_only(matrix):
        return NAN
    return _mean([matrix[i - 1, i] - base[i] for i in tasks if i >= 1])


def plasticity(R: ArrayLike, subset: Iterable[int] | None = None) -> float:
    """Plasticity (MFT, "learn"): ``mean_{i in S} R[i][i]``, each task scored right after it is learned."""
    matrix = _matrix(R)
    tasks = _tasks(subset, matrix.shape[1])
    if _is_final_row_only(matrix):
        return NAN
    return _mean([matrix[i, i] for i in tasks])


def summarize(R: ArrayLike, b: ArrayLike | None = None, subset: Iterable[int] | None = None) -> dict[str, float]:
    """All metrics for one run: keys ``last, avg, forgetting, bwt, fwt, learn``.

    ``R`` may be ``(1, T)`` (final row only), in which case only ``last`` is defined. ``fwt`` is NaN
    when no zero-shot row ``b`` is given.
    """
    tasks = None if subset is None else list(subset)
    return {
        "last": last(R, tasks),
        "avg": average_incremental(R, tasks),
        "forgetting": forgetting(R, tasks),
        "bwt": backward_transfer(R, tasks),
        "fwt": NAN if b is None else forward_transfer(R, b, tasks),
        "learn": plasticity(R, tasks),
    }
