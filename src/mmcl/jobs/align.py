"""``mmcl align``, the alignment stage of the LLaVA-1.5 recipe: the projector learns captions, the rest stays frozen.

It runs once per (suite, backbone), from the base model, on the suite's alignment task
(``suites.<suite>.alignment``); every method and seed then starts its first continual stage from the
aligned model. Only the projector of the task's modality is trained, so the LLM (and with it the
base model's text scores, the reference of the linguistic deltas) is the base model's, bit for bit.
The aligned model is saved as a base directory (``save_base``), so the stage, teacher and
evaluation jobs load it exactly as they load a base model.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from accelerate.utils import set_seed

from mmcl.config.schema import Params
from mmcl.core import paths
from mmcl.core.provenance import record
from mmcl.data.families import suite_families
from mmcl.data.records import load_split
from mmcl.engine.batching import Collator, InstructionDataset
from mmcl.engine.features import media_reader
from mmcl.engine.loop import FitSettings, fit, train_only
from mmcl.engine.resume import discard_state
from mmcl.methods.base import parameters_under
from mmcl.models.checkpoint import MANIFEST, load_base, save_base

SEED = 0  # one aligned model for every grid seed


def align(
    params: Params,
    suite: str,
    backbone: str,
    data_dir: Path,
    base_dir: Path,
    out_dir: Path,
    features_dir: Path | None = None,
    log=print,
) -> None:
    """Train the projector of the alignment task's modality on its captions and save the aligned model; with
    ``features_dir``, on the cached encoder outputs."""
    alignment = params.suites[suite].alignment
    if alignment is None:
        raise ValueError(f"suite '{suite}' has no alignment stage (suites.{suite}.alignment is null)")
    task = alignment.task
    modality = params.suites[suite].tasks[task].modality
    set_seed(SEED)
    model, processor = load_base(base_dir, attn_implementation=params.backbones[backbone].attn_implementation)
    trainable = set(parameters_under(model, f"projectors.{modality}."))
    train_only(model, trainable)
    samples = load_split(data_dir, [task], "train")
    collator = Collator.for_model(model, suite_families(params.suites[suite]), seed=SEED)
    settings = FitSettings.of(alignment, params.train, seed=SEED)
    n_trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    log(
        f"alignment of {backbone} on '{task}': {len(samples)} samples, {alignment.steps} steps, "
        f"{n_trainable:,} trainable parameters (the {modality} projector)"
    )
    started = time.perf_counter()
    reader = media_reader(model, processor, features_dir, base_dir, data_dir, log)
    dataset = InstructionDataset(samples, data_dir, reader)
    result = fit(model, dataset, collator, settings, log=log, resume_dir=paths.resume_dir(out_dir))
    stats = {
        "task": task,
        "trained": sorted(trainable),
        "losses": result["losses"],
        "seconds": round(time.perf_counter() - started, 2),
    }
    manifest = json.loads((Path(base_dir) / MANIFEST).read_text()) | {"alignment": stats}
    save_base(out_dir, result["model"], processor, manifest)
    job = {"command": "align", "suite": suite, "backbone": backbone, "base": str(base_dir), "task": task}
    record(out_dir / "provenance.json", params, job)
    discard_state(paths.resume_dir(out_dir))
