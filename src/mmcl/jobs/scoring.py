"""``mmcl rescore``: an evaluation's scores from its stored predictions, without torch.

``predictions/<task>.jsonl`` (written by ``mmcl predict``, one line per test sample in split order) is
scored per task into ``scores.json``, every task of one family and metric in one call (all captioning
tasks in one pycocoevalcap run). Changing a metric, or adding one, re-runs this job and no generation.
Each task's entry records how many samples were scored and how many the split has: with
``evaluation.max_samples``, a seeded subset (``evaluated_samples``) that is the same for every checkpoint.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from mmcl.config.schema import Params
from mmcl.core.io import atomic_path, read_json, write_json
from mmcl.core.provenance import record
from mmcl.data.families import suite_families
from mmcl.data.records import DataError, Sample, data_fix, read_jsonl, split_path

JUDGE = "judge.json"  # beside a generation suite's predictions: the judge's accuracy, reported with its scores


def evaluated_samples(params: Params, suite: str, data_dir: Path, tasks=None) -> dict[str, list[Sample]]:
    """Each task's test samples: the whole split, or with ``evaluation.max_samples`` a subset drawn with
    ``evaluation.subset_seed`` (the same for every checkpoint), kept in split order."""
    settings = params.evaluation
    families = suite_families(params.suites[suite])
    samples = {}
    for task in tasks or params.suites[suite].evaluated_tasks:
        path = split_path(data_dir, task, "test")
        split = read_jsonl(path)
        if settings.max_samples is not None and len(split) > settings.max_samples:
            drawn = random.Random(f"{settings.subset_seed}:{task}").sample(range(len(split)), settings.max_samples)
            split = [split[i] for i in sorted(drawn)]
        samples[task] = split
        if families[task].prediction == "likelihood" and (bare := [s.id for s in split if not s.options]):
            raise DataError(
                f"{path}: sample '{bare[0]}' has no 'options' to choose from, but task '{task}' is "
                f"{params.suites[suite].tasks[task].family} (scored by likelihood); {data_fix(Path(data_dir))}"
            )
    return samples


def split_size(data_dir: Path, task: str) -> int:
    with open(split_path(data_dir, task, "test")) as f:
        return sum(1 for line in f if line.strip())


def score(
    params: Params, suite: str, predictions: dict[str, dict[str, str]], samples, data_dir: Path | None = None
) -> dict:
    """Scores of every task, grouped by family and metric so that each group is scored in one call; with
    ``data_dir``, each records the size of the task's whole test split (``of``)."""
    families = suite_families(params.suites[suite])
    tasks = params.suites[suite].tasks
    groups: dict[tuple, dict] = {}
    for task, preds in predictions.items():
        refs = {s.id: s.answers for s in samples[task]}
        groups.setdefault((tasks[task].family, tasks[task].metric), {})[task] = (preds, refs)
    scores = {}
    for (family_name, _), corpora in groups.items():
        family = next(families[t] for t in corpora)
        for task, metrics in family.score(corpora).items():
            scores[task] = {
                "family": family_name,
                "modality": tasks[task].modality,
                "n": len(corpora[task][0]),
                "of": split_size(data_dir, task) if data_dir else len(corpora[task][0]),
                "primary": family.primary,
                "metrics": metrics,
            }
    return {task: scores[task] for task in params.suites[suite].evaluated_tasks if task in scores}


def write_predictions(out_dir: Path, task: str, samples: list[Sample], predictions: dict[str, str]) -> None:
    with atomic_path(out_dir / "predictions" / f"{task}.jsonl") as tmp, open(tmp, "w") as f:
        for sample in samples:
            row = {"id": sample.id, "prediction": predictions[sample.id], "answers": sample.answers}
            row |= {"instruction": sample.instruction, "media": sample.media}  # what per-item analyses show
            f.write(json.dumps(row) + "\n")


def read_predictions(out_dir: Path, task: str, samples: list[Sample]) -> dict[str, str]:
    path = Path(out_dir) / "predictions" / f"{task}.jsonl"
    if not path.exists():
        raise FileNotFoundError(f"{path}: no predictions of task '{task}'; run `mmcl predict` for this checkpoint")
    found = {row["id"]: row["prediction"] for row in map(json.loads, path.read_text().splitlines())}
    if missing := [s.id for s in samples if s.id not in found]:
        raise DataError(
            f"{path}: no prediction of sample '{missing[0]}' ({len(missing)} missing): the test split or "
            "evaluation.max_samples changed since it was predicted; run `mmcl predict` again"
        )
    return {s.id: found[s.id] for s in samples}


def rescore(params: Params, *, suite: str, data_dir: Path, out_dir: Path, tasks: list[str], log=print) -> dict:
    """``out_dir/scores.json`` from ``out_dir/predictions/``: the scores of ``tasks``."""
    samples = evaluated_samples(params, suite, data_dir, tasks)
    predictions = {task: read_predictions(out_dir, task, samples[task]) for task in tasks}
    scores = score(params, suite, predictions, samples, data_dir)
    if (Path(out_dir) / JUDGE).exists():
        accuracy = read_json(Path(out_dir) / JUDGE)["accuracy"]
        for task in read_json(Path(out_dir) / JUDGE)["tasks"]:
            if task in scores:
                scores[task]["metrics"]["judge_accuracy"] = accuracy
    for task, entry in scores.items():
        log(f"{task}: " + ", ".join(f"{k} {v:.1f}" for k, v in entry["metrics"].items()))
    write_json(Path(out_dir) / "scores.json", scores)
    job = {"command": "rescore", "suite": suite, "tasks": tasks}
    record(Path(out_dir) / "provenance-scores.json", params, job)
    return scores
