"""``mmcl gradients``: MoDE's gradient-conflict diagnostic (its Figure 5) for one stage checkpoint.

Per tensor the checkpoint's method trains, the cosine between the gradients of two losses
(``mmcl.metrics.gradients``): the text loss on a batch of the stage's last understanding task (its
answer tokens; the images of its prompts are image tokens, as in training) and the image loss on a
batch of the suite's generation tasks (the image tokens written after each prompt). Both batches are
drawn from the training split by seed, and both go through the model's ordinary forward, where MoDE
routes each token by its id, as when it answers and draws at evaluation.
"""

from __future__ import annotations

from pathlib import Path

import torch

from mmcl.config.schema import Params
from mmcl.core.io import write_json
from mmcl.core.plan import stage_from_key
from mmcl.core.registry import ConfigError
from mmcl.data.families import generation_tasks, suite_families
from mmcl.data.records import load_split
from mmcl.engine.batching import Collator, InstructionDataset
from mmcl.engine.distill import SequencePool
from mmcl.engine.features import media_reader
from mmcl.engine.loop import train_only
from mmcl.jobs.evaluate import load_model
from mmcl.jobs.stage import StageJob
from mmcl.methods import METHODS
from mmcl.metrics.gradients import gradient_conflicts


def gradient_diagnostic(params: Params, job: StageJob, checkpoint: Path, out: Path, batch_size: int = 16, log=print):
    """Write (and return) the per-tensor conflicts of ``checkpoint``, the stage ``job`` names, with what they
    were measured on."""
    suite, backbone, method, seed, stage_key = job.suite, job.backbone, job.method, job.seed, job.stage_key
    data_dir, base_dir = job.data_dir, job.base_dir
    drawing = generation_tasks(params.suites[suite])
    if not drawing:
        raise ConfigError(
            f"gradients: suite '{suite}' has no image-generation task (family `generation`) to take the image "
            "loss on; add one, as mode-synth's `draw`, or diagnose a suite that has one"
        )
    cl_method = METHODS.get(params.methods[method].type)(params.methods[method])
    understanding = [task for task in stage_from_key(cl_method.schedule, stage_key).tasks if task not in drawing]
    if not understanding:
        raise ConfigError(f"gradients: stage '{stage_key}' trains no understanding task to take the text loss on")
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model, processor = load_model(params, method, base_dir, checkpoint)
    processor = media_reader(model, processor, job.features_dir, base_dir, data_dir, log)
    model.to(device)
    trainable = set(cl_method.trainable_parameters(model))
    train_only(model, trainable)
    collator = Collator.for_model(model, suite_families(params.suites[suite]), seed=seed)

    def batch(tasks: list[str]) -> dict:
        samples = load_split(data_dir, tasks, "train")
        dataset = InstructionDataset(samples, data_dir, processor)
        pool = SequencePool(samples, dataset, collator, f"{seed}/gradients/{'+'.join(tasks)}")
        return pool.batch(pool.picks(0, batch_size), device)

    text, image = batch(understanding[-1:]), batch(drawing)
    conflicts = gradient_conflicts(model, text, image)
    result = {
        "suite": suite,
        "backbone": backbone,
        "method": method,
        "stage": stage_key,
        "seed": seed,
        "text_task": understanding[-1],
        "image_tasks": drawing,
        "batch_sizes": {"text": len(text["input_ids"]), "image": len(image["input_ids"])},
        "tensors": {name: conflict._asdict() for name, conflict in conflicts.items()},  # cosine NaN -> null
    }
    write_json(out, result)
    both = [c.cosine for c in conflicts.values() if c.text_norm > 0 and c.image_norm > 0]
    negative = sum(cosine < 0 for cosine in both)
    log(f"{len(conflicts)} tensors, {len(both)} reached by both losses ({negative} with a negative cosine): {out}")
    return result
