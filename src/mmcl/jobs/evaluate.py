"""``mmcl evaluate``: one checkpoint on every task of its suite (seen and unseen), but the alignment task.

Each task is predicted the way its family asks (``mmcl.engine.inference``): by greedy generation, or by
choosing the likeliest of a sample's options; a generation task's images are generated, decoded and read
by the suite's judge (``draw``), and also kept as PNGs
(``generated/<task>/<id>.png``). Predictions are kept per sample (``predictions/<task>.jsonl``) and
scored per task (``scores.json``), all captioning tasks of the job in one pycocoevalcap call.
``scores.json`` is written last: its presence means the evaluation is complete.
"""

from __future__ import annotations

import json
import sys
import time
from collections import Counter
from pathlib import Path

import torch
from tqdm.auto import tqdm

from mmcl.config.schema import Params
from mmcl.core.io import atomic_path, write_json
from mmcl.core.provenance import record
from mmcl.core.registry import ConfigError
from mmcl.data.families import suite_families
from mmcl.data.records import DataError, Sample, data_fix, read_jsonl, split_path
from mmcl.engine.batching import Collator
from mmcl.engine.features import media_reader
from mmcl.engine.inference import draw, predict
from mmcl.methods import METHODS
from mmcl.models.checkpoint import load_base, load_stage
from mmcl.models.judge import load_judge


def test_samples(params: Params, suite: str, data_dir: Path) -> dict[str, list[Sample]]:
    cap = params.evaluation.max_samples
    families = suite_families(params.suites[suite])
    samples = {}
    for task in params.suites[suite].evaluated_tasks:
        path = split_path(data_dir, task, "test")
        samples[task] = read_jsonl(path)[:cap]
        if families[task].prediction == "likelihood" and (bare := [s.id for s in samples[task] if not s.options]):
            raise DataError(
                f"{path}: sample '{bare[0]}' has no 'options' to choose from, but task '{task}' is "
                f"{params.suites[suite].tasks[task].family} (scored by likelihood); {data_fix(Path(data_dir))}"
            )
    return samples


def score(params: Params, suite: str, predictions: dict[str, dict[str, str]], samples) -> dict:
    """Scores of every task, grouped by family and metric so that each group is scored in one call."""
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
            task_config = tasks[task]
            scores[task] = {
                "family": family_name,
                "modality": task_config.modality,
                "n": len(corpora[task][0]),
                "primary": family.primary,
                "metrics": metrics,
            }
    return {task: scores[task] for task in params.suites[suite].evaluated_tasks}


def write_outputs(out_dir: Path, predictions, samples, scores: dict, drawings: dict | None = None) -> None:
    for task, images in (drawings or {}).items():
        with atomic_path(out_dir / "generated" / task) as tmp:
            tmp.mkdir()
            for sample_id, image in images.items():
                image.save(tmp / f"{sample_id}.png")
    for task, preds in predictions.items():
        with atomic_path(out_dir / "predictions" / f"{task}.jsonl") as tmp, open(tmp, "w") as f:
            for sample in samples[task]:
                row = {"id": sample.id, "prediction": preds[sample.id], "answers": sample.answers}
                f.write(json.dumps(row) + "\n")
    write_json(out_dir / "scores.json", scores)


def load_model(params: Params, method: str | None, base_dir: Path, checkpoint: Path | None):
    """The base model, or the model of a stage checkpoint: shaped by its method (e.g. LoRA adapters), then loaded."""
    model, processor = load_base(base_dir)
    if checkpoint is not None:
        method_config = params.methods[method]
        METHODS.get(method_config.type)(method_config).prepare_model(model)
        load_stage(checkpoint, model)
    return model, processor


def evaluate(
    params: Params,
    *,
    suite: str,
    method: str | None,
    data_dir: Path,
    base_dir: Path,
    checkpoint: Path | None,
    out_dir: Path,
    log=print,
    judge_dir: Path | None = None,
    features_dir: Path | None = None,
) -> dict:
    """Evaluate the base model (``checkpoint`` None) or a stage checkpoint of ``method``; a suite with
    generation tasks needs its judge (``mmcl train-judge``), whose accuracy on real images is reported
    beside each generation score (``judge_accuracy``)."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    families = suite_families(params.suites[suite])
    samples = test_samples(params, suite, data_dir)
    drawing = [task for task in samples if families[task].prediction == "generate_image"]
    if drawing and judge_dir is None:
        raise ConfigError(f"evaluate: suite '{suite}' has generation tasks ({', '.join(drawing)}); pass its --judge")
    judge, judge_settings = load_judge(judge_dir) if drawing else (None, {})
    model, processor = load_model(params, method, base_dir, checkpoint)
    processor = media_reader(model, processor, features_dir, base_dir, data_dir, log)
    model.to(device).eval()
    collator = Collator(model.tokenizer, model.num_media_tokens, families)
    predictions, drawings = {}, {}
    started = time.perf_counter()
    for task, task_samples in tqdm(samples.items(), desc="evaluate", disable=not sys.stderr.isatty()):
        if task in drawing:
            batch_size = params.evaluation.batch_size
            predictions[task], drawings[task] = draw(
                model, processor, collator, task_samples, data_dir, batch_size, device, judge
            )
        else:
            predictions[task] = predict(
                families[task], model, processor, collator, task_samples, data_dir, params.evaluation, device
            )
        log(f"{task}: {len(task_samples)} predictions ({time.perf_counter() - started:.1f} s)")
    scores = score(params, suite, predictions, samples)
    for task in drawing:
        scores[task]["metrics"]["judge_accuracy"] = judge_settings["stats"]["accuracy"]
    for task, entry in scores.items():
        log(f"{task}: " + ", ".join(f"{k} {v:.1f}" for k, v in entry["metrics"].items()))
    write_outputs(out_dir, predictions, samples, scores, drawings)
    job = {"command": "evaluate", "suite": suite, "method": method, "checkpoint": str(checkpoint or base_dir)}
    record(out_dir / "provenance.json", params, job)
    return scores


def evaluate_reference(params: Params, *, suite: str, data_dir: Path, out_dir: Path, log=print) -> dict:
    """Score the "most common training answer/caption" predictor: the floor a model must clear."""
    samples = test_samples(params, suite, data_dir)
    predictions = {}
    for task, task_samples in samples.items():
        train = read_jsonl(split_path(data_dir, task, "train"))
        most_common, _ = Counter(answer for s in train for answer in s.answers).most_common(1)[0]
        predictions[task] = {s.id: most_common for s in task_samples}
        log(f"{task}: most common training target '{most_common}'")
    scores = score(params, suite, predictions, samples)
    write_outputs(out_dir, predictions, samples, scores)
    record(out_dir / "provenance.json", params, {"command": "evaluate --reference", "suite": suite})
    return scores
