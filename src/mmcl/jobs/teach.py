"""``mmcl teach``: run the previous stage's model once to cache what a stage distils from."""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path

import torch

from mmcl.config.schema import Params
from mmcl.core.integrity import seal
from mmcl.core.io import atomic_path
from mmcl.core.provenance import record
from mmcl.jobs.stage import StageJob, open_stage


def teach_stage(params: Params, job: StageJob, out_dir: Path, log=print) -> None:
    """Write the method's teacher outputs (``CLMethod.teach``) for the stage, sealed, to ``out_dir``."""
    cl_method, model, _, _, context = open_stage(params, job, {}, log)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    # The teacher only infers: bf16 on a GPU that has it (its cached logits then are bf16 too), else fp32.
    model.to(device, torch.bfloat16 if device.type == "cuda" and torch.cuda.is_bf16_supported() else None)
    log(f"teacher on {device} ({next(model.parameters()).dtype})")
    started = time.perf_counter()
    with atomic_path(out_dir) as tmp:
        tmp.mkdir()
        cl_method.teach(model, context, tmp)
        seal(tmp)
    log(f"teacher outputs of stage {job.stage_key} written to {out_dir} ({time.perf_counter() - started:.1f} s)")
    job_record = {k: str(v) if isinstance(v, Path) else v for k, v in asdict(job).items()}
    record(out_dir / "provenance.json", params, {"command": "teach", **job_record})
