"""Evaluate one checkpoint on every task of its suite (seen and unseen).

Predictions are kept per sample (``predictions/<task>.jsonl``) and scored per task
(``scores.json``), all captioning tasks of the job in one pycocoevalcap call. ``scores.json`` is
written last: its presence means the evaluation is complete.
"""

from __future__ import annotations

import json
import sys
import time
from collections import Counter
from pathlib import Path

import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from mmcl.config import Params
from mmcl.data.records import Sample, read_jsonl, split_path
from mmcl.io import atomic_path, write_json
from mmcl.methods import METHODS
from mmcl.models.checkpoint import load_base, load_stage
from mmcl.provenance import record
from mmcl.training.batching import Collator, InstructionDataset
from mmcl.training.jobs import task_families


def test_samples(params: Params, suite: str, data_dir: Path) -> dict[str, list[Sample]]:
    cap = params.evaluation.max_samples
    return {task: read_jsonl(split_path(data_dir, task, "test"))[:cap] for task in params.suites[suite].tasks}


def score(params: Params, suite: str, predictions: dict[str, dict[str, str]], samples) -> dict:
    """Scores of every task, grouped by family and metric so that each group is scored in one call."""
    families = task_families(params, suite)
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
    return {task: scores[task] for task in tasks}


def write_outputs(out_dir: Path, predictions, samples, scores: dict) -> None:
    for task, preds in predictions.items():
        with atomic_path(out_dir / "predictions" / f"{task}.jsonl") as tmp, open(tmp, "w") as f:
            for sample in samples[task]:
                row = {"id": sample.id, "prediction": preds[sample.id], "answers": sample.answers}
                f.write(json.dumps(row) + "\n")
    write_json(out_dir / "scores.json", scores)


@torch.no_grad()
def generate(
    model,
    processor,
    collator: Collator,
    samples: list[Sample],
    data_dir: Path,
    batch_size: int,
    max_new_tokens: int,
    device: torch.device,
) -> dict[str, str]:
    loader = DataLoader(
        InstructionDataset(samples, data_dir, processor),
        batch_size=batch_size,
        collate_fn=collator.generation_batch,
    )
    predictions: list[str] = []
    for batch in loader:
        media = {m: t.to(device) for m, t in batch.pop("media").items()}
        new = model.generate(
            batch["input_ids"].to(device),
            batch["attention_mask"].to(device),
            media,
            max_new_tokens=max_new_tokens,
        )
        predictions += [text.strip() for text in model.tokenizer.batch_decode(new, skip_special_tokens=True)]
    return {sample.id: pred for sample, pred in zip(samples, predictions, strict=True)}


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
) -> dict:
    """Evaluate the base model (``checkpoint`` None) or a stage checkpoint of ``method``."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model, processor = load_base(base_dir)
    if checkpoint is not None:
        method_config = params.methods[method]
        METHODS.get(method_config.type)(method_config).prepare_model(model)
        load_stage(checkpoint, model)
    model.to(device).eval()
    collator = Collator(model.tokenizer, model.num_media_tokens, task_families(params, suite))
    samples = test_samples(params, suite, data_dir)
    predictions = {}
    started = time.perf_counter()
    for task, task_samples in tqdm(samples.items(), desc="evaluate", disable=not sys.stderr.isatty()):
        predictions[task] = generate(
            model,
            processor,
            collator,
            task_samples,
            data_dir,
            params.evaluation.batch_size,
            params.evaluation.max_new_tokens,
            device,
        )
        log(f"{task}: {len(task_samples)} predictions ({time.perf_counter() - started:.1f} s)")
    scores = score(params, suite, predictions, samples)
    for task, entry in scores.items():
        log(f"{task}: " + ", ".join(f"{k} {v:.1f}" for k, v in entry["metrics"].items()))
    write_outputs(out_dir, predictions, samples, scores)
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
