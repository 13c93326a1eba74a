"""Every path the workflow reads or writes under ``data/``, ``downloads/``, ``results/`` and ``logs/``.

The rules, their input functions and the commands build paths here and nowhere else. Each function's
arguments default to the Snakemake wildcard of the same name, so ``stage_checkpoint()`` is the rule's
pattern (``results/{suite}/.../stages/{stage}/checkpoint``) and ``stage_checkpoint("micl-synth", ...)``
one concrete directory. Paths are relative to the project root. A stage is named by its key
(``mmcl.core.plan``), so orders that share leading tasks share its directory.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

DATA, DOWNLOADS, RESULTS, LOGS = "data", "downloads", "results", "logs"
# Suite, backbone, method, seed, stage, order, dataset and file as Snakemake wildcards.
S, B, M, SEED, STAGE, ORDER = "{suite}", "{backbone}", "{method}", "{seed}", "{stage}", "{order}"
DATASET, FILE = "{dataset}", "{file}"
EXTRACTED = "extracted"  # downloads/<dataset>/extracted/<archive>/: an unpacked archive


# --- data/ and downloads/ ---


def suite_dir(suite: str = S) -> str:
    return f"{DATA}/{suite}"


def suite_manifest(suite: str = S) -> str:
    """Written last by `mmcl prepare`: the suite's data is complete."""
    return f"{suite_dir(suite)}/manifest.json"


def dataset_dir(dataset: str = DATASET) -> str:
    return f"{DATA}/{dataset}"


def dataset_summary(dataset: str = DATASET) -> str:
    """Written last by `mmcl convert`: the converted dataset is complete."""
    return f"{dataset_dir(dataset)}/prepare.json"


def downloads(dataset: str = DATASET) -> str:
    return f"{DOWNLOADS}/{dataset}"


def download(dataset: str = DATASET, file: str = FILE) -> str:
    return f"{downloads(dataset)}/{file}"


def extracted(dataset: str = DATASET, file: str = FILE) -> str:
    return f"{downloads(dataset)}/{EXTRACTED}/{file}"


# --- results/: what every run of a suite and backbone shares, and the stages of one run ---


def backbone_dir(suite: str = S, backbone: str = B) -> str:
    return f"{RESULTS}/{suite}/{backbone}"


def _in_backbone_dir(tail: str, what: str) -> Callable[..., str]:
    def path(suite: str = S, backbone: str = B) -> str:
        return f"{backbone_dir(suite, backbone)}/{tail}"

    path.__doc__ = f"{what}: ``results/<suite>/<backbone>/{tail}``."
    return path


base_checkpoint = _in_backbone_dir("base/checkpoint", "The stage-0 base model (`mmcl train-base`)")
aligned_checkpoint = _in_backbone_dir("aligned/checkpoint", "The base model after the alignment stage (`mmcl align`)")
base_scores = _in_backbone_dir("base/eval/scores.json", "The base model's evaluation")
base_lm_eval = _in_backbone_dir("base/lm_eval/scores.json", "The base model's lm-evaluation-harness scores")
feature_cache = _in_backbone_dir("features", "The frozen encoders' cached outputs (`mmcl encode-media`)")
image_tokenizer_dir = _in_backbone_dir(
    "image_tokenizer", "An embedded unified backbone's VQ-VAE (`mmcl train-tokenizer`)"
)


def start_model(suite: str, backbone: str, aligned: bool) -> str:
    """The model every run starts from: the aligned model of a suite with an alignment stage, else the base."""
    return aligned_checkpoint(suite, backbone) if aligned else base_checkpoint(suite, backbone)


def judge_dir(suite: str = S) -> str:
    """The judge of the suite's generated images (`mmcl train-judge`)."""
    return f"{RESULTS}/{suite}/judge"


def reference_scores(suite: str = S) -> str:
    """The most-common-answer predictor's scores."""
    return f"{RESULTS}/{suite}/reference/scores.json"


def run_dir(suite: str = S, backbone: str = B, method: str = M, seed: str | int = SEED) -> str:
    return f"{backbone_dir(suite, backbone)}/{method}/seed{seed}"


def run_file(suite: str = S, backbone: str = B, method: str = M, seed: str | int = SEED, order: str = ORDER) -> str:
    """One run's accuracy matrices and metrics (`mmcl aggregate`)."""
    return f"{run_dir(suite, backbone, method, seed)}/runs/{order}.json"


def gradients_file(
    suite: str = S, backbone: str = B, method: str = M, seed: str | int = SEED, stage: str = STAGE
) -> str:
    """MoDE's gradient-conflict diagnostic of one stage checkpoint (`mmcl gradients`)."""
    return f"{run_dir(suite, backbone, method, seed)}/gradients/{stage}.json"


def stage_dir(suite: str = S, backbone: str = B, method: str = M, seed: str | int = SEED, stage: str = STAGE) -> str:
    return f"{run_dir(suite, backbone, method, seed)}/stages/{stage}"


def stage_artifact(name: str, *run_and_stage: str | int) -> str:
    """What a stage writes or reads under its directory: its ``checkpoint``, a cached artifact its method
    reads (``teacher``, ``replay``, each made by the rule of that name), ...; ``run_and_stage`` is the
    (suite, backbone, method, seed, stage) of ``stage_dir``, or its wildcards when not given."""
    return f"{stage_dir(*run_and_stage)}/{name}"


def stage_checkpoint(*run_and_stage: str | int) -> str:
    return stage_artifact("checkpoint", *run_and_stage)


def stage_scores(*run_and_stage: str | int) -> str:
    return stage_artifact("eval/scores.json", *run_and_stage)


def stage_lm_eval(*run_and_stage: str | int) -> str:
    return stage_artifact("lm_eval/scores.json", *run_and_stage)


def lm_eval_beside(scores: str | Path) -> Path:
    """Where `mmcl lm-eval` writes beside an evaluation (``.../eval/scores.json``) of the same checkpoint."""
    return Path(scores).parent.parent / "lm_eval" / "scores.json"


STAGE_META = "meta.json"  # in a stage checkpoint: what the stage trained, and how long (mmcl.models.checkpoint)


def stage_meta(checkpoint: str | Path) -> Path:
    return Path(checkpoint) / STAGE_META


def eval_beside(checkpoint: str | Path) -> Path:
    """Where a checkpoint's evaluation goes (predictions, response store, scores): ``<its dir>/eval``."""
    return Path(checkpoint).parent / "eval"


def run_predictions(
    suite: str = S, backbone: str = B, method: str = M, seed: str | int = SEED, grid: str = "default"
) -> str:
    """The summary of one method and seed's predictions in a grid (`mmcl predict` of its stage checkpoints);
    grids that share stages (the default and a paper table) each write their own."""
    return f"{run_dir(suite, backbone, method, seed)}/predictions/{grid}.json"


base_predictions = _in_backbone_dir("base/predictions.json", "The summary of the base model's predictions")


def checkpoint_beside(scores: str | Path) -> Path:
    """The checkpoint that an evaluation (``.../eval/scores.json``) scored."""
    return Path(scores).parent.parent / "checkpoint"


def resume_dir(out_dir: str | Path) -> Path:
    """Where an interrupted training job keeps its state: beside its output, which Snakemake deletes on failure."""
    out_dir = Path(out_dir)
    return out_dir.with_name(out_dir.name + ".resume")


# --- logs/: one log and one benchmark file per job, named like what it makes ---


def run_stem(suite: str = S, backbone: str = B, method: str = M, seed: str | int = SEED) -> str:
    return f"{suite}/{backbone}/{method}/seed{seed}"


def stage_stem(suite: str = S, backbone: str = B, method: str = M, seed: str | int = SEED, stage: str = STAGE) -> str:
    return f"{run_stem(suite, backbone, method, seed)}/{stage}"


def log(stem: str, kind: str | None = None) -> str:
    """``logs/<stem>.<kind>.log`` (``logs/<stem>.log`` without a kind)."""
    return f"{LOGS}/{stem}{f'.{kind}' if kind else ''}.log"


def benchmark(rule: str, stem: str) -> str:
    """Snakemake's benchmark file (wall time, CPU time, peak memory) of one job."""
    return f"{LOGS}/benchmarks/{rule}/{stem}.tsv"
