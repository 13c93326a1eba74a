"""The two training jobs of the workflow: build the stage-0 base model, and train one CL stage."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

from accelerate.utils import set_seed

from mmcl.config import Params
from mmcl.data import TASK_FAMILIES
from mmcl.data.families import TaskFamily
from mmcl.data.families.generation import DRAW_CAPTIONS_TASK, READ_BACK_TASK, Generation
from mmcl.data.instructions import INSTRUCTIONS_TASK
from mmcl.data.records import ENCODER_OF, Sample, read_jsonl, split_path
from mmcl.data.replay import read_replay
from mmcl.integrity import seal
from mmcl.io import atomic_path
from mmcl.methods import METHODS
from mmcl.methods.base import StageContext
from mmcl.models import BACKBONES
from mmcl.models.checkpoint import load_base, load_stage, save_base, save_stage
from mmcl.plan import Stage, stage_from_key, stage_seed
from mmcl.provenance import record
from mmcl.training.batching import Collator, InstructionDataset
from mmcl.training.loop import FitSettings, fit
from mmcl.training.perception import pretrain_encoders
from mmcl.training.resume import discard_state


def task_families(params: Params, suite: str) -> dict:
    tasks = params.suites[suite].tasks
    families = {name: TASK_FAMILIES.get(task.family)(task.metric) for name, task in tasks.items()}
    families[INSTRUCTIONS_TASK] = TaskFamily()  # instruction pools (IKD) are trained on their one answer
    families[READ_BACK_TASK] = TaskFamily()  # so are a unified backbone's stage-0 readings of drawings
    families[DRAW_CAPTIONS_TASK] = Generation()  # captions drawn (MoDE's distillation on image-text pairs)
    return families


def load_split(data_dir: Path, tasks, split: str) -> list[Sample]:
    return [sample for task in tasks for sample in read_jsonl(split_path(data_dir, task, split))]


def stage_samples(data_dir: Path, stage: Stage, artifacts: dict[str, Path]) -> list[Sample]:
    """A stage's training samples: its tasks' training splits, then its rehearsal buffer if it has one
    (after them, so that methods reading the stage's own task from its first samples still find it)."""
    samples = load_split(data_dir, stage.tasks, "train")
    if "replay" in artifacts:
        samples += read_replay(artifacts["replay"], data_dir)
    return samples


def train_base(
    params: Params,
    suite: str,
    backbone: str,
    data_dir: Path,
    out_dir: Path,
    log=print,
    artifacts: dict[str, Path] | None = None,
) -> None:
    """Assemble the backbone (from the ``artifacts`` its family requires), pretrain random-init encoders
    and run stage 0 on what its family trains it on, the suite's text tasks by default (each where the
    backbone family asks for it; only the encoders the suite's tasks use)."""
    config = params.backbones[backbone]
    family = BACKBONES.get(config.family)(config, artifacts)
    suite_config = params.suites[suite]
    model, processor = family.assemble(suite_config, data_dir)
    stats = {}
    used = {ENCODER_OF[task.modality] for task in suite_config.tasks.values() if task.modality in ENCODER_OF}
    if perception := {m: s for m, s in family.encoder_pretraining().items() if m in used}:
        started = time.perf_counter()
        stats["perception"] = pretrain_encoders(
            model, processor, data_dir, perception, seed=getattr(config, "init_seed", 0), log=log
        )
        stats["perception_seconds"] = round(time.perf_counter() - started, 2)
    stage0 = family.stage0()
    samples = family.stage0_samples(suite_config, data_dir) if stage0 is not None else []
    if samples:
        set_seed(getattr(config, "init_seed", 0))
        for name, param in model.named_parameters():
            param.requires_grad_(name.startswith("llm."))
        collator = model_collator(params, suite, model, supervise_prompt=family.stage0_prompt_loss)
        settings = FitSettings(
            steps=stage0.steps,
            batch_size=stage0.batch_size,
            lr=stage0.lr,
            warmup_ratio=stage0.warmup_ratio,
            grad_clip=stage0.grad_clip,
            log_every=params.train.log_every,
            precision=params.train.precision,
            checkpoint_every=params.train.checkpoint_every,
        )
        tasks = ", ".join(f"'{task}'" for task in dict.fromkeys(sample.task for sample in samples))
        log(f"stage 0: {len(samples)} samples of {tasks}, {stage0.steps} steps")
        started = time.perf_counter()
        dataset = InstructionDataset(samples, data_dir, processor)
        result = fit(model, dataset, collator, settings, log=log, resume_dir=resume_path(out_dir))
        stats |= {"losses": result["losses"], "seconds": round(time.perf_counter() - started, 2)}
    manifest = {
        "backbone": backbone,
        "family": config.family,
        "suite": suite,
        "video": {"frames": config.video.frames, "temporal": config.video.temporal},
        "projector_hidden": config.projector_hidden,
        "freeze_encoders": config.freeze_encoders,
        "stage0": stats,
    }
    save_base(out_dir, model, processor, manifest)
    record(out_dir / "provenance.json", params, {"command": "train-base", "suite": suite, "backbone": backbone})
    discard_state(resume_path(out_dir))


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


def open_stage(params: Params, job: StageJob, artifacts: dict[str, Path], log):
    """The method, the model after the previous stage, the fit settings and the stage's context."""
    method_config = params.methods[job.method]
    cl_method = METHODS.get(method_config.type)(method_config)
    stage = stage_from_key(cl_method.schedule, job.stage_key)
    if (job.prev_dir is None) != (stage.previous is None):
        expected = stage.previous or "the base model"
        raise ValueError(f"stage '{job.stage_key}' of a {cl_method.schedule} method starts from {expected}")

    set_seed(stage_seed(job.seed, job.stage_key))
    model, processor = load_base(job.base_dir)
    cl_method.prepare_model(model)
    carried: set[str] = set()
    if job.prev_dir is not None:
        carried, method_state = load_stage(job.prev_dir, model)
        cl_method.load_state_dict(method_state)
    train = params.train
    settings = FitSettings(
        steps=sum(train.task_steps.get(task, train.steps) for task in stage.tasks),  # whatever the schedule
        batch_size=train.batch_size,
        lr=method_config.lr or train.lr,
        weight_decay=train.weight_decay,
        warmup_ratio=train.warmup_ratio,
        schedule=train.schedule,
        grad_clip=train.grad_clip,
        log_every=train.log_every,
        seed=stage_seed(job.seed, job.stage_key),
        precision=train.precision,
        num_workers=train.num_workers,
        checkpoint_every=train.checkpoint_every,
    )
    collator = model_collator(params, job.suite, model, seed=settings.seed)
    dataset = InstructionDataset(stage_samples(job.data_dir, stage, artifacts), job.data_dir, processor)
    context = StageContext(stage, dataset, collator, params.suites[job.suite], artifacts, log)
    return cl_method, model, carried, settings, context


def train_only(model, names: set[str]) -> None:
    """Make exactly the parameters ``names`` trainable."""
    for name, param in model.named_parameters():
        param.requires_grad_(name in names)


def model_collator(params: Params, suite: str, model, **options) -> Collator:
    """A collator for ``suite``'s tasks that cuts sequences at the model's context length."""
    return Collator(
        model.tokenizer,
        model.num_media_tokens,
        task_families(params, suite),
        max_length=model.llm.config.max_position_embeddings,
        **options,
    )


def teach_stage(params: Params, job: StageJob, out_dir: Path, log=print) -> None:
    """Run the previous stage's model once to cache what the stage distils from (``CLMethod.teach``)."""
    cl_method, model, _, _, context = open_stage(params, job, {}, log)
    started = time.perf_counter()
    with atomic_path(out_dir) as tmp:
        tmp.mkdir()
        cl_method.teach(model, context, tmp)
        seal(tmp)
    log(f"teacher outputs of stage {job.stage_key} written to {out_dir} ({time.perf_counter() - started:.1f} s)")
    job_record = {k: str(v) if isinstance(v, Path) else v for k, v in asdict(job).items()}
    record(out_dir / "provenance.json", params, {"command": "teach", **job_record})


def train_stage(params: Params, job: StageJob, out_dir: Path, artifacts: dict[str, Path] | None = None, log=print):
    """Train one stage from the previous stage's checkpoint (or the base) and save its checkpoint."""
    cl_method, model, carried, settings, context = open_stage(params, job, artifacts or {}, log)
    stage = context.stage
    if missing := sorted(set(cl_method.required_artifacts(stage)) - set(context.artifacts)):
        raise ValueError(f"stage '{job.stage_key}' of method '{job.method}' needs its {', '.join(missing)} artifact")
    cl_method.before_stage(model, context)
    trainable = set(cl_method.trainable_parameters(model))
    train_only(model, trainable)
    n_trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    log(
        f"stage {job.stage_key}: method {job.method}, tasks {', '.join(stage.tasks)} ({len(context.dataset)} "
        f"samples), {settings.steps} steps, {n_trainable:,} trainable parameters"
    )
    started = time.perf_counter()
    resume_dir = resume_path(out_dir)
    result = fit(model, context.dataset, context.collator, settings, cl_method.loss, log, resume_dir=resume_dir)
    model = result["model"]
    cl_method.after_stage(model, context)
    if result["accelerator"].is_main_process:
        meta = {
            "stage": job.stage_key,
            "previous": stage.previous,
            "tasks": list(stage.tasks),
            "method": job.method,
            "seed": job.seed,
            "steps": settings.steps,
            "trainable_parameters": n_trainable,
            "losses": result["losses"],
            "seconds": round(time.perf_counter() - started, 2),
        }
        save_stage(out_dir, model, carried | trainable, cl_method.state_dict(), meta)
        record(out_dir / "provenance.json", params, {"command": "train-stage", **meta, "backbone": job.backbone})
        discard_state(resume_dir)


def resume_path(out_dir: Path) -> Path:
    """Where an interrupted stage keeps its state: beside the checkpoint, which Snakemake deletes on failure."""
    return out_dir.with_name(out_dir.name + ".resume")
