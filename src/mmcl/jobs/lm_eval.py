"""``mmcl lm-eval``: lm-evaluation-harness on the LLM inside a checkpoint: the linguistic measures of real backbones.

The checkpoint is loaded as ``mmcl evaluate`` loads it (``mmcl.jobs.evaluate.load_model``); its LLM, with peft
adapters (LoRA) merged into the weights, is wrapped in lm_eval's ``HFLM`` and evaluated zero-shot on
the tasks of ``backbones.<name>.lm_eval``, each scored by its ``acc``. ``scores.json`` holds every
task in the format of ``mmcl evaluate``'s scores (accuracy in percent, with its measure) and each
measure's harmonic mean; ``mmcl.jobs.aggregate`` reads the tasks as columns of the accuracy matrix, beside
the suite's. It is written last: its presence means the evaluation is complete.
"""

from __future__ import annotations

import time
from pathlib import Path

from mmcl.config.schema import MEASURES, LMEvalConfig, Params
from mmcl.core.io import write_json
from mmcl.core.provenance import record
from mmcl.core.registry import ConfigError, closest
from mmcl.jobs.evaluate import load_model
from mmcl.metrics.linguistic import harmonic_mean

ACCURACY = "acc,none"  # lm_eval's "acc" with no filter: likeliest choice (multiple choice), greedy continuation


def settings_of(params: Params, backbone: str) -> LMEvalConfig:
    settings = params.backbones[backbone].lm_eval
    if settings is None:
        raise ConfigError(
            f"{params.path}: backbones.{backbone}.lm_eval: not set, so this backbone has no lm-eval tasks; "
            "add nlu/nlg task lists (as the llava-* backbones have)"
        )
    return settings


def task_manager(settings: LMEvalConfig, where: str, path: str):
    """lm_eval's index of its own tasks and of those under ``include_path``."""
    from lm_eval.tasks import TaskManager

    if settings.include_path is not None and not Path(settings.include_path).is_dir():
        raise ConfigError(f"{path}: {where}.include_path: no such directory '{settings.include_path}'")
    return TaskManager(include_path=settings.include_path)


def check_tasks(settings: LMEvalConfig, manager, where: str, path: str) -> None:
    """Every listed name is one task lm_eval knows (a group or tag would report several)."""
    known = manager.all_subtasks
    for measure in MEASURES:
        for i, task in enumerate(getattr(settings, measure)):
            if task not in known:
                kind = "a group or tag, not a task: list its tasks" if task in manager.all_tasks else "an unknown task"
                raise ConfigError(
                    f"{path}: {where}.{measure}[{i}]: '{task}' is {kind}{closest(task, known)}; `lm-eval ls tasks` "
                    "lists lm_eval's tasks, and a YAML under include_path defines one"
                )


def checkpoint_llm(params: Params, method: str | None, base_dir: Path, checkpoint: Path | None):
    """The LLM of the base model or of a stage checkpoint (adapters merged), and its tokenizer."""
    model, _ = load_model(params, method, base_dir, checkpoint)
    llm = model.llm
    if hasattr(llm, "merge_and_unload"):  # a peft model: W + BA in place, then the plain transformers model
        llm = llm.merge_and_unload()
    return llm, model.tokenizer


def lm_scores(settings: LMEvalConfig, results: dict, where: str) -> dict:
    """``scores.json`` from lm_eval's results: per task, the accuracy in percent; per measure, the
    harmonic mean over its tasks."""
    tasks = {}
    for task, measure in settings.tasks().items():
        found = results["results"][task]
        if ACCURACY not in found:
            metrics = ", ".join(k for k in found if k != "alias")
            raise ConfigError(
                f"{where}.{measure}: lm-eval task '{task}' reports no accuracy ({ACCURACY}) but {metrics}; "
                "list tasks scored by acc"
            )
        tasks[task] = {
            "family": "lm_eval",
            "modality": "text",
            "measure": measure,
            "n": results["n-samples"][task]["effective"],
            "primary": "accuracy",
            "metrics": {"accuracy": 100 * found[ACCURACY]},
        }
    measures = {
        measure: harmonic_mean(tasks[t]["metrics"]["accuracy"] for t in getattr(settings, measure))
        for measure in MEASURES
        if getattr(settings, measure)
    }
    return {"tasks": tasks, "measures": measures, "task_versions": {t: results["versions"][t] for t in tasks}}


def lm_evaluate(
    params: Params,
    *,
    backbone: str,
    method: str | None,
    base_dir: Path,
    checkpoint: Path | None,
    out_dir: Path,
    log=print,
) -> dict:
    """Run the backbone's lm-eval tasks on the base model (``checkpoint`` None) or a stage checkpoint."""
    import torch

    settings = settings_of(params, backbone)
    where = f"backbones.{backbone}.lm_eval"
    manager = task_manager(settings, where, params.path)
    check_tasks(settings, manager, where, params.path)  # before the model: a typo costs seconds, not a load

    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM

    started = time.perf_counter()
    llm, tokenizer = checkpoint_llm(params, method, base_dir, checkpoint)
    llm.to(torch.device("cuda" if torch.cuda.is_available() else "cpu")).eval()
    results = simple_evaluate(
        model=HFLM(pretrained=llm, tokenizer=tokenizer, batch_size=settings.batch_size),
        tasks=list(settings.tasks()),
        task_manager=manager,
        limit=settings.limit,
        bootstrap_iters=0,  # no standard errors: the study reports point accuracies
        log_samples=False,
    )
    scores = lm_scores(settings, results, f"{params.path}: {where}")
    for task, entry in scores["tasks"].items():
        log(f"{task} ({entry['measure']}): accuracy {entry['metrics']['accuracy']:.1f} over {entry['n']} documents")
    log(" | ".join(f"{m} {v:.1f}" for m, v in scores["measures"].items()) + f" ({time.perf_counter() - started:.0f} s)")
    job = {"command": "lm-eval", "backbone": backbone, "method": method, "checkpoint": str(checkpoint or base_dir)}
    record(out_dir / "provenance.json", params, job)
    write_json(out_dir / "scores.json", scores)
    return scores
