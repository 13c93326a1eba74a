"""``mmcl train-stage``: train one continual-learning stage from the previous stage's checkpoint."""

from __future__ import annotations

import time
from pathlib import Path

from mmcl.config.schema import Params
from mmcl.core import paths
from mmcl.core.provenance import record
from mmcl.engine.loop import fit, train_only
from mmcl.engine.resume import discard_state
from mmcl.jobs.stage import StageJob, open_stage
from mmcl.models.checkpoint import save_stage


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
    resume_dir = paths.resume_dir(out_dir)
    result = fit(model, context.dataset, context.collator, settings, cl_method.loss, log, resume_dir, keep_fp32=carried)
    model, accelerator = result["model"], result["accelerator"]
    cl_method.after_stage(model, context)
    # A collective: under FSDP every process gathers its shards of the whole tensors for the main one to write.
    state = accelerator.get_state_dict(result["prepared"])
    if accelerator.is_main_process:
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
        save_stage(out_dir, state, carried | trainable, cl_method.state_dict(), meta)
        record(out_dir / "provenance.json", params, {"command": "train-stage", **meta, "backbone": job.backbone})
        discard_state(resume_dir)
