"""One run's accuracy matrices and continual-learning metrics, from its evaluation scores.

Rows are stages (row t: after training stage t of the order), columns every task of the suite:
the order's tasks first, then the others (e.g. the stage-0 text task). ``_acc`` metrics are taken
over the order's QA tasks on the ``accuracy`` matrix, ``_cider`` over its captioning tasks on the
``cider`` matrix; see ``mmcl.metrics.continual`` for the formulas.
"""

from __future__ import annotations

import math
from pathlib import Path

from mmcl.config import Params
from mmcl.io import read_json
from mmcl.methods import METHODS
from mmcl.metrics.continual import forgetting, summarize

SUBSETS = {"acc": ("qa", "accuracy"), "cider": ("captioning", "cider")}


def _row(scores: dict, tasks: list[str], metric: str) -> list[float | None]:
    return [scores[task]["metrics"].get(metric) for task in tasks]


def _nan(values):
    return [[math.nan if v is None else v for v in row] for row in values]


def aggregate_run(
    params: Params,
    *,
    suite: str,
    order: str,
    backbone: str,
    method: str,
    seed: int,
    stage_scores: list[Path],
    zeroshot_scores: Path,
) -> dict:
    tasks = params.order(order, suite)
    suite_tasks = list(params.suites[suite].tasks)
    eval_tasks = tasks + [t for t in suite_tasks if t not in tasks]
    zeroshot = read_json(zeroshot_scores)
    schedule = METHODS.get(params.methods[method].type).schedule
    expected = {"sequential": len(tasks), "joint": 1, "none": 0}[schedule]
    if len(stage_scores) != expected:
        raise ValueError(
            f"a {schedule} run of {len(tasks)} tasks has {expected} stages, got {len(stage_scores)} scores"
        )

    rows = [read_json(path) for path in stage_scores] or [zeroshot] * len(tasks)
    stages = ["joint"] if schedule == "joint" else list(tasks)
    metrics_names = sorted({m for entry in zeroshot.values() for m in entry["metrics"]})
    matrix = {m: [_row(scores, eval_tasks, m) for scores in rows] for m in metrics_names}
    baseline = {m: _row(zeroshot, eval_tasks, m) for m in metrics_names}

    summary = {}
    for suffix, (family, metric) in SUBSETS.items():
        subset = [i for i, t in enumerate(tasks) if params.suites[suite].tasks[t].family == family]
        if not subset or metric not in matrix:
            continue
        square = _nan([row[: len(tasks)] for row in matrix[metric]])
        values = summarize(square, _nan([baseline[metric][: len(tasks)]])[0], subset)
        summary.update({f"{name}_{suffix}": value for name, value in values.items()})
    # Over every task of the order, each in its primary metric (accuracy %, CIDEr x100: both points).
    primary = _nan([[scores[t]["metrics"].get(scores[t]["primary"]) for t in tasks] for scores in rows])
    summary["forgetting"] = forgetting(primary)
    if schedule == "none":  # never trained, so nothing learned to forget
        summary = {k: math.nan if k.startswith(("forgetting", "bwt")) else v for k, v in summary.items()}
    return {
        "suite": suite,
        "order": order,
        "backbone": backbone,
        "method": method,
        "seed": seed,
        "tasks": tasks,
        "eval_tasks": eval_tasks,
        "families": {t: params.suites[suite].tasks[t].family for t in eval_tasks},
        "primary_metric": {t: zeroshot[t]["primary"] for t in eval_tasks},
        "stages": stages,
        "matrix": matrix,
        "zeroshot": baseline,
        "metrics": summary,
    }
