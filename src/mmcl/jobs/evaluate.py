"""``mmcl predict`` and ``mmcl evaluate``: the predictions of checkpoints on their tasks, then their scores.

``predict`` loads the start model once and evaluates each target in turn: the start model itself, or a
stage checkpoint of one method swapped onto it (``mmcl.models.checkpoint.StageSwap``), on the tasks the
target names (``mmcl.core.plan.scored_tasks``: by default only the cells the metrics read). Each task is
predicted the way its family asks (``mmcl.engine.inference``): greedy generation, the likeliest of a
sample's options, or an image drawn and read by the suite's judge (``draw``; the images are kept as
``generated/<task>/<id>.png``). Samples go in fixed batches of similar prompt length, and each batch's
predictions reach the target's response store (``mmcl.engine.responses``) before the next starts: an
evaluation killed at any point resumes after its last batch, and one whose model, decoding settings and
records are unchanged generates nothing. ``predictions/<task>.jsonl`` then lists them in sample order.

Scores come from those files (``mmcl.jobs.scoring``, ``mmcl rescore``, no torch). ``evaluate`` does both
for one target; ``scores.json`` is written last: its presence means the evaluation is complete.
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from mmcl.config.schema import Params
from mmcl.core.io import atomic_path, write_json
from mmcl.core.provenance import record
from mmcl.core.registry import ConfigError
from mmcl.data.families import suite_families
from mmcl.data.records import read_jsonl, split_path
from mmcl.engine.responses import ResponseStore, batches, run_key, sample_key
from mmcl.jobs.scoring import JUDGE, evaluated_samples, rescore, score, write_predictions

PROGRESS_SECONDS = 60  # how often a long task logs how far it is


@dataclass(frozen=True)
class Target:
    """One model to evaluate: a stage checkpoint (None: the start model itself), where its evaluation
    goes, and the tasks it is scored on."""

    checkpoint: Path | None
    out_dir: Path
    tasks: tuple[str, ...]


def load_model(params: Params, method: str | None, base_dir: Path, checkpoint: Path | None):
    """The base model, or the model of a stage checkpoint: shaped by its method (e.g. LoRA adapters), then loaded."""
    from mmcl.models.checkpoint import load_base, load_stage

    model, processor = load_base(base_dir)
    if checkpoint is not None:
        prepare(params, method, model)
        load_stage(checkpoint, model)
    return model, processor


def prepare(params: Params, method: str, model):
    """Shape ``model`` as ``method``'s checkpoints need it (e.g. LoRA adapters); returns the method."""
    from mmcl.methods import METHODS

    method_config = params.methods[method]
    shaping = METHODS.get(method_config.type)(method_config)
    shaping.prepare_model(model)
    return shaping


def decoding(params: Params, dtype: str) -> dict:
    """What a prediction depends on besides the model and the record (its store key)."""
    settings = params.evaluation
    return {"batch_size": settings.batch_size, "max_new_tokens": settings.max_new_tokens, "dtype": dtype}


def predict_targets(
    params: Params,
    *,
    suite: str,
    method: str | None,
    data_dir: Path,
    base_dir: Path,
    targets: list[Target],
    log=print,
    judge_dir: Path | None = None,
    features_dir: Path | None = None,
) -> dict[Path, int]:
    """Predict every target's tasks (``method``'s checkpoints, or the start model); returns, per target's
    directory, how many predictions it generated (the rest came from its response store)."""
    import torch
    from tqdm.auto import tqdm

    from mmcl.engine.batching import Collator
    from mmcl.engine.features import cache_dtype, media_reader
    from mmcl.engine.inference import draw, predict
    from mmcl.models.checkpoint import StageSwap, load_base
    from mmcl.models.judge import load_judge

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dtype = cache_dtype(device)  # bf16 on a GPU that has it, else fp32
    families = suite_families(params.suites[suite])
    tasks = list(dict.fromkeys(task for target in targets for task in target.tasks))
    samples = evaluated_samples(params, suite, data_dir, tasks)
    drawing = [task for task in tasks if families[task].prediction == "generate_image"]
    if drawing and judge_dir is None:
        raise ConfigError(f"evaluate: suite '{suite}' has generation tasks ({', '.join(drawing)}); pass its --judge")
    judge, judge_settings = load_judge(judge_dir) if drawing else (None, {})
    model, processor = load_base(base_dir, dtype if dtype != torch.float32 else None)
    shaping = prepare(params, method, model) if any(target.checkpoint is not None for target in targets) else None
    processor = media_reader(model, processor, features_dir, base_dir, data_dir, log)
    model.to(device).eval()
    swap = StageSwap(model, shaping if params.evaluation.merge_adapters else None)
    collator = Collator(model.tokenizer, model.num_media_tokens, families)
    decoded_with = decoding(params, str(dtype).removeprefix("torch."))
    generated = {}
    for target in targets:
        merged = swap.load(target.checkpoint)  # a merged model's rounding differs: it is part of the key
        settings = decoded_with | {"merged": True} if merged else decoded_with
        run = run_key(base_dir, target.checkpoint, settings, Path(data_dir) / "manifest.json")
        keys = {task: {s.id: sample_key(run, s) for s in samples[task]} for task in target.tasks}
        store = ResponseStore(target.out_dir, run)
        started = time.perf_counter()
        for task in target.tasks:
            missing = store.missing(samples[task], keys[task])
            bar = tqdm(total=len(missing), desc=task, disable=not sys.stderr.isatty(), dynamic_ncols=True)
            logged = time.perf_counter()
            for batch in batches(missing, params.evaluation.batch_size, collator.prompt_length):
                if task in drawing:
                    readings, images = draw(model, processor, collator, batch, data_dir, len(batch), device, judge)
                    save_images(target.out_dir / "generated" / task, images)
                else:
                    family = families[task]
                    readings = predict(family, model, processor, collator, batch, data_dir, params.evaluation, device)
                store.append(task, [(keys[task][s.id], s.id, readings[s.id]) for s in batch])
                bar.update(len(batch))
                if time.perf_counter() - logged >= PROGRESS_SECONDS:  # a line in the rule's log now and then
                    log(f"{task}: {bar.n}/{len(missing)} predicted ({time.perf_counter() - started:.0f} s)")
                    logged = time.perf_counter()
            bar.close()
            stored = len(samples[task]) - len(missing)
            log(f"{task}: {len(missing)} predicted, {stored} stored ({time.perf_counter() - started:.1f} s)")
            predictions = {s.id: store.found[keys[task][s.id]] for s in samples[task]}
            write_predictions(target.out_dir, task, samples[task], predictions)
        if drawing:
            write_json(target.out_dir / JUDGE, {"accuracy": judge_settings["stats"]["accuracy"], "tasks": drawing})
        job = {"command": "predict", "suite": suite, "method": method, "checkpoint": str(target.checkpoint or base_dir)}
        record(target.out_dir / "provenance.json", params, job | {"generated": store.generated, "merged": merged})
        generated[target.out_dir] = store.generated
    return generated


def save_images(directory: Path, images: dict) -> None:
    """A batch's generated images, each written whole before the batch's predictions are stored."""
    directory.mkdir(parents=True, exist_ok=True)
    for sample_id, image in images.items():
        with atomic_path(directory / f"{sample_id}.png") as tmp:
            image.save(tmp, format="PNG")


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
    tasks: list[str] | None = None,
) -> dict:
    """Predict and score one target: the base model (``checkpoint`` None) or a stage checkpoint of
    ``method``, on ``tasks`` (None: every evaluated task of the suite). A suite with generation tasks needs
    its judge (``mmcl train-judge``), whose accuracy on real images is reported beside each generation
    score (``judge_accuracy``)."""
    tasks = tuple(tasks or params.suites[suite].evaluated_tasks)
    target = Target(checkpoint, Path(out_dir), tasks)
    predict_targets(
        params,
        suite=suite,
        method=method,
        data_dir=data_dir,
        base_dir=base_dir,
        targets=[target],
        log=log,
        judge_dir=judge_dir,
        features_dir=features_dir,
    )
    return rescore(params, suite=suite, data_dir=data_dir, out_dir=Path(out_dir), tasks=list(tasks), log=log)


def evaluate_reference(params: Params, *, suite: str, data_dir: Path, out_dir: Path, log=print) -> dict:
    """Score the "most common training answer/caption" predictor: the floor a model must clear."""
    samples = evaluated_samples(params, suite, data_dir)
    predictions = {}
    for task, task_samples in samples.items():
        train = read_jsonl(split_path(data_dir, task, "train"))
        most_common, _ = Counter(answer for s in train for answer in s.answers).most_common(1)[0]
        predictions[task] = {s.id: most_common for s in task_samples}
        write_predictions(Path(out_dir), task, task_samples, predictions[task])
        log(f"{task}: most common training target '{most_common}'")
    scores = score(params, suite, predictions, samples, data_dir)
    write_json(Path(out_dir) / "scores.json", scores)
    record(Path(out_dir) / "provenance.json", params, {"command": "evaluate --reference", "suite": suite})
    return scores
