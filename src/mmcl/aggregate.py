"""One run's accuracy matrices and continual-learning metrics, from its evaluation scores.

Rows are stages (row t: after training stage t of the order), columns every evaluated task of the suite:
the order's tasks first, then the others (e.g. the stage-0 text task). ``_acc`` metrics are taken
over the order's QA tasks on the ``accuracy`` matrix, ``_cider`` over its captioning tasks on the
``cider`` matrix; see ``mmcl.metrics.continual`` for the formulas. Suites with NLU or NLG text tasks
(text-only tasks whose family has a ``linguistic`` measure) also get the VL score and the linguistic
deltas, after every stage and after the last (``mmcl.metrics.linguistic``), each task in its primary
metric; their run files also name the tasks of each measure (``measures``: ``vl``, ``nlu``, ``nlg``).

A backbone with ``lm_eval`` settings (a real LLM) is measured by lm-evaluation-harness instead: each
evaluation's ``scores.json`` has a ``lm_eval/scores.json`` beside its directory (``mmcl lm-eval``), whose
tasks become more columns after the suite's, and the NLU and NLG measures are those tasks'.

Suites with generation tasks outside the order (MoDE's setting: the stage-0 model draws, the order
trains understanding) also get the generation score before continual training (the stage-0 model's)
and after the last stage, their difference (inter-modal forgetting), and the trainable parameters of
the last stage (read from its checkpoint's ``meta.json``), all columns of MoDE's table.
"""

from __future__ import annotations

import math
from pathlib import Path

from mmcl.config import MEASURES, Params
from mmcl.data import TASK_FAMILIES
from mmcl.io import read_json
from mmcl.methods import METHODS
from mmcl.metrics.continual import forgetting, summarize
from mmcl.metrics.linguistic import linguistic_summary

SUBSETS = {"acc": ("qa", "accuracy"), "cider": ("captioning", "cider")}


def _row(scores: dict, tasks: list[str], metric: str) -> list[float | None]:
    return [scores[task]["metrics"].get(metric) for task in tasks]


def _primary(scores: dict, tasks: list[str]) -> list[float | None]:
    return [scores[task]["metrics"].get(scores[task]["primary"]) for task in tasks]


def lm_eval_scores(scores: Path) -> Path:
    """Where ``mmcl lm-eval`` writes beside an evaluation (``.../eval/scores.json``) of the same checkpoint."""
    return Path(scores).parent.parent / "lm_eval" / "scores.json"


def read_scores(path: Path, lm_eval: bool) -> dict:
    """An evaluation's scores, with the lm-eval tasks of the same checkpoint after the suite's tasks."""
    scores = read_json(path)
    if lm_eval:
        scores |= read_json(lm_eval_scores(path))["tasks"]
    return scores


def checkpoint_meta(scores: Path) -> Path:
    """The meta file of the checkpoint that an evaluation (``.../eval/scores.json``) scored."""
    return Path(scores).parent.parent / "checkpoint" / "meta.json"


def generation_summary(primary: list[list[float]], base: list[float], columns: list[int]) -> dict[str, float]:
    """Mean generation score of the stage-0 model and after the last stage, and the drop between them."""
    before = sum(base[j] for j in columns) / len(columns)
    after = sum(primary[-1][j] for j in columns) / len(columns)
    return {"gen_before": before, "gen_after": after, "inter_forgetting": before - after}


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
    # Each task in its primary metric (accuracy %, CIDEr x100: both points).
    primary = _nan([_primary(scores, eval_tasks) for scores in rows])
    summary["forgetting"] = forgetting([row[: len(tasks)] for row in primary])
    if schedule == "none":  # never trained, so nothing learned to forget
        summary = {k: math.nan if k.startswith(("forgetting", "bwt")) else v for k, v in summary.items()}
    kinds = params.suites[suite].tasks
    record = {}
    base = _nan([_primary(zeroshot, eval_tasks)])[0]
    # lm-evaluation-harness columns are not suite tasks, and none of them draws.
    drawing = [j for j, t in enumerate(eval_tasks) if t in kinds and t not in tasks and kinds[t].family == "generation"]
    if drawing:
        summary.update(generation_summary(primary, base, drawing))
        evaluations = [zeroshot_scores, *stage_scores]
        record["generated"] = {"stage0": str(evaluations[0].parent), "final": str(evaluations[-1].parent)}
        if stage_scores:
            meta = read_json(checkpoint_meta(stage_scores[-1]))
            summary["trainable_params"] = meta.get("trainable_parameters", math.nan)
    if lm_eval is not None:
        measures = {measure: [eval_tasks.index(t) for t in getattr(lm_eval, measure)] for measure in MEASURES}
    else:
        measures = {
            measure: [
                j
                for j, t in enumerate(eval_tasks)
                if kinds[t].modality == "text" and TASK_FAMILIES.get(kinds[t].family).linguistic == measure
            ]
            for measure in MEASURES
        }
    if any(measures.values()):
        vl = [j for j, t in enumerate(tasks) if kinds[t].modality != "text"]
        # Row k of a sequential run (and of the untrained one) follows stage k + 1; a joint run's one row
        # follows the last stage, having trained every task.
        numbers = [len(tasks)] if schedule == "joint" else list(range(1, len(rows) + 1))
        trained = [[j for j in vl if j < number] for number in numbers]
        summary.update(linguistic_summary(primary, base, trained, measures, numbers))
        # The tasks behind each harmonic mean, so that reports can show the base model's own scores.
        columns = {"vl": vl} | {name: js for name, js in measures.items() if js}
        record["measures"] = {name: [eval_tasks[j] for j in js] for name, js in columns.items()}
    return {
        "suite": suite,
        "order": order,
        "backbone": backbone,
        "method": method,
        "seed": seed,
        "tasks": tasks,
        "eval_tasks": eval_tasks,
        "families": {t: zeroshot[t]["family"] for t in eval_tasks},
        "primary_metric": {t: zeroshot[t]["primary"] for t in eval_tasks},
        "stages": stages,
        "matrix": matrix,
        "zeroshot": baseline,
        "metrics": summary,
        **record,
    }
