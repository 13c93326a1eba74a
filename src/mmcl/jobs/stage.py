"""What the two jobs of one stage (``mmcl teach``, ``mmcl train-stage``) open the same way: the method,
the model after the previous stage, the stage's training data, its fit settings and its context."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from accelerate.utils import set_seed

from mmcl.config.schema import Params
from mmcl.core.plan import Stage, stage_from_key, stage_seed
from mmcl.core.registry import ConfigError
from mmcl.data.families import suite_families
from mmcl.data.records import Sample, load_split
from mmcl.data.replay import read_replay
from mmcl.engine.batching import Collator, InstructionDataset
from mmcl.engine.features import media_reader
from mmcl.engine.loop import FitSettings
from mmcl.methods import METHODS
from mmcl.methods.base import StageContext
from mmcl.models.checkpoint import load_base, load_stage
from mmcl.models.mllm import enable_gradient_checkpointing


@dataclass
class StageJob:
    """Where a stage's jobs (teach, train) run: what names it, and the model it starts from."""

    suite: str
    backbone: str
    method: str
    seed: int
    stage_key: str
    data_dir: Path
    base_dir: Path
    prev_dir: Path | None
    features_dir: Path | None = None  # the frozen encoders' cached outputs (None: decode media)


def stage_samples(data_dir: Path, stage: Stage, artifacts: dict[str, Path]) -> list[Sample]:
    """A stage's training samples: its tasks' training splits, then its rehearsal buffer if it has one
    (after them, so that methods reading the stage's own task from its first samples still find it)."""
    samples = load_split(data_dir, stage.tasks, "train")
    if "replay" in artifacts:
        samples += read_replay(artifacts["replay"], data_dir)
    return samples


def open_stage(params: Params, job: StageJob, artifacts: dict[str, Path], log):
    """The method, the model after the previous stage, the fit settings and the stage's context."""
    method_config = params.methods[job.method]
    cl_method = METHODS.get(method_config.type)(method_config)
    stage = stage_from_key(cl_method.schedule, job.stage_key)
    if (job.prev_dir is None) != (stage.previous is None):
        expected = stage.previous or "the base model"
        raise ValueError(f"stage '{job.stage_key}' of a {cl_method.schedule} method starts from {expected}")

    set_seed(stage_seed(job.seed, job.stage_key))
    backbone = params.backbones[job.backbone]
    model, processor = load_base(job.base_dir, attn_implementation=backbone.attn_implementation)
    processor = media_reader(model, processor, job.features_dir, job.base_dir, job.data_dir, log)
    if problem := cl_method.model_problem(model):
        raise ConfigError(f"method '{job.method}' on backbone '{job.backbone}': {problem}")
    cl_method.prepare_model(model)
    if params.train.gradient_checkpointing:
        enable_gradient_checkpointing(model.llm)
    carried: set[str] = set()
    if job.prev_dir is not None:
        carried, method_state = load_stage(job.prev_dir, model)
        cl_method.load_state_dict(method_state)
    train = params.train
    settings = FitSettings.of(
        train,
        train,
        steps=sum(train.task_steps.get(task, train.steps) for task in stage.tasks),  # whatever the schedule
        lr=method_config.lr or train.lr,
        seed=stage_seed(job.seed, job.stage_key),
    )
    suite = params.suites[job.suite]
    collator = Collator.for_model(model, suite_families(suite), seed=settings.seed)
    dataset = InstructionDataset(stage_samples(job.data_dir, stage, artifacts), job.data_dir, processor)
    context = StageContext(stage, dataset, collator, suite, artifacts, log, settings.batch_size)
    return cl_method, model, carried, settings, context
