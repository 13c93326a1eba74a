"""``mmcl aggregate``: one run's accuracy matrices and run-level metrics, from its evaluation scores.

Rows are stages (row t: after training stage t of the order), columns every evaluated task of the suite:
the order's tasks first, then the others (e.g. the stage-0 text task). A backbone with ``lm_eval``
settings (a real LLM) is also measured by lm-evaluation-harness: each evaluation's ``scores.json`` has a
``lm_eval/scores.json`` beside its directory (``mmcl lm-eval``), whose tasks become more columns after
the suite's. Every registered analysis (``mmcl.analyses``) then adds the metrics it measures on the run:
the continual-learning ones always, the linguistic and generation ones where the suite has what they
measure.
"""

from __future__ import annotations

import math
from pathlib import Path

from mmcl.analyses import ANALYSES
from mmcl.analyses.base import RunScores
from mmcl.config.schema import Params
from mmcl.core import paths
from mmcl.core.io import read_json, write_json
from mmcl.core.plan import plan_stages, scored_tasks
from mmcl.core.provenance import git_state
from mmcl.methods import METHODS


def _row(scores: dict, tasks: list[str], metric: str) -> list[float | None]:
    """The scores of ``tasks`` in ``metric``; None where the task was not scored (or has no such metric)."""
    return [scores[task]["metrics"].get(metric) if task in scores else None for task in tasks]


def _primary(scores: dict, tasks: list[str]) -> list[float]:
    values = [scores[task]["metrics"].get(scores[task]["primary"]) if task in scores else None for task in tasks]
    return [math.nan if v is None else v for v in values]


def _samples(zeroshot: dict, tasks: list[str]) -> dict[str, list[int]]:
    """Test samples scored per task, and of how many (fewer with evaluation.max_samples's seeded subset)."""
    return {t: [zeroshot[t]["n"], zeroshot[t].get("of", zeroshot[t]["n"])] for t in tasks if "n" in zeroshot[t]}


def needed_cells(
    params: Params, schedule: str, tasks: list[str], eval_tasks: list[str], rows: list[dict]
) -> list[dict]:
    """With ``evaluation.cells: needed``, each stage's scores of the cells this order's metrics read only:
    a stage shared with another order of the grid is scored on that order's next task too, which this
    run's matrix leaves out, so that a run's file does not depend on the other orders of its grid."""
    if params.evaluation.cells != "needed" or schedule != "sequential":
        return rows
    stages = plan_stages(schedule, tasks)
    keep = [set(scored_tasks(stage, [tasks], eval_tasks, "needed")) for stage in stages]
    return [{task: entry for task, entry in row.items() if task in kept} for row, kept in zip(rows, keep, strict=True)]


ENVIRONMENT = ("python", "platform", "device", "hardware", "packages")  # of a job's provenance


def environment(scores: Path) -> dict:
    """Where the run's last model was evaluated (the provenance of its prediction job, beside its scores): what
    explains a difference between two result sets whose code and settings agree. Empty when not recorded."""
    provenance = Path(scores).parent / "provenance.json"
    found = read_json(provenance) if provenance.exists() else {}
    return {key: found[key] for key in ENVIRONMENT if key in found}


def read_scores(path: Path, lm_eval: bool) -> dict:
    """An evaluation's scores, with the lm-eval tasks of the same checkpoint after the suite's tasks."""
    scores = read_json(path)
    if lm_eval:
        scores |= read_json(paths.lm_eval_beside(path))["tasks"]
    return scores


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
    lm_eval = params.backbones[backbone].lm_eval
    columns = list(params.suites[suite].evaluated_tasks) + list(lm_eval.tasks() if lm_eval else ())
    eval_tasks = tasks + [t for t in columns if t not in tasks]
    zeroshot = read_scores(zeroshot_scores, lm_eval is not None)
    schedule = METHODS.get(params.methods[method].type).schedule
    expected = {"sequential": len(tasks), "joint": 1, "none": 0}[schedule]
    if len(stage_scores) != expected:
        raise ValueError(
            f"a {schedule} run of {len(tasks)} tasks has {expected} stages, got {len(stage_scores)} scores"
        )

    rows = [read_scores(path, lm_eval is not None) for path in stage_scores] or [zeroshot] * len(tasks)
    rows = needed_cells(params, schedule, tasks, eval_tasks, rows)
    metrics_names = sorted({m for entry in zeroshot.values() for m in entry["metrics"]})
    matrix = {m: [_row(scores, eval_tasks, m) for scores in rows] for m in metrics_names}
    run = RunScores(
        suite=params.suites[suite],
        tasks=tasks,
        eval_tasks=eval_tasks,
        schedule=schedule,
        rows=rows,
        zeroshot=zeroshot,
        matrix=matrix,
        baseline={m: _row(zeroshot, eval_tasks, m) for m in metrics_names},
        primary=[_primary(scores, eval_tasks) for scores in rows],
        base=_primary(zeroshot, eval_tasks),
        stage_scores=[Path(p) for p in stage_scores],
        zeroshot_scores=Path(zeroshot_scores),
        lm_eval=lm_eval,
    )
    summary, entries = {}, {}
    for name in ANALYSES.names():
        metrics, extra = ANALYSES.get(name)().aggregate(run)
        summary |= metrics
        entries |= extra
    return {
        "suite": suite,
        "order": order,
        "backbone": backbone,
        "method": method,
        "seed": seed,
        # What matches two result sets cell by cell: the settings its results depend on, and the code.
        "fingerprint": params.run_fingerprint(suite, backbone, method),
        "commit": git_state()["code_commit"],
        "environment": environment(stage_scores[-1] if stage_scores else zeroshot_scores),
        "tasks": tasks,
        "eval_tasks": eval_tasks,
        "families": {t: zeroshot[t]["family"] for t in eval_tasks},
        "primary_metric": {t: zeroshot[t]["primary"] for t in eval_tasks},
        "samples": _samples(zeroshot, eval_tasks),
        "stages": ["joint"] if schedule == "joint" else list(tasks),
        "matrix": matrix,
        "zeroshot": run.baseline,
        "metrics": summary,
        **entries,
    }


def write_run(params: Params, out: Path, log=print, **run) -> None:
    """Aggregate one run (``aggregate_run``'s keywords) into ``out`` and log its metrics on one line."""
    result = aggregate_run(params, **run)
    write_json(out, result)
    log(" | ".join(f"{k} {v:.1f}" for k, v in result["metrics"].items() if v == v))
