"""``mmcl train-base``: build a backbone's stage-0 base model, the model every run of a suite starts from."""

from __future__ import annotations

import time
from pathlib import Path

from accelerate.utils import set_seed

from mmcl.config.schema import Params
from mmcl.core import paths
from mmcl.core.provenance import record
from mmcl.data.families import suite_families
from mmcl.data.records import ENCODER_OF
from mmcl.engine.batching import Collator, InstructionDataset
from mmcl.engine.loop import FitSettings, fit
from mmcl.engine.perception import pretrain_encoders
from mmcl.engine.resume import discard_state
from mmcl.models.backbones import BACKBONES
from mmcl.models.checkpoint import save_base


def artifacts_of(params: Params, suite: str, backbone: str, given: dict[str, Path]) -> dict[str, Path]:
    """The artifacts the backbone is assembled from: those ``given``, the others where the workflow builds them."""
    config = params.backbones[backbone]
    built = {"image_tokenizer": Path(paths.image_tokenizer_dir(suite, backbone))}
    return {name: built[name] for name in BACKBONES.get(config.family)(config).required_artifacts()} | given


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
        stats["perception"] = pretrain_encoders(model, processor, data_dir, perception, seed=config.init_seed, log=log)
        stats["perception_seconds"] = round(time.perf_counter() - started, 2)
    stage0 = family.stage0()
    samples = family.stage0_samples(suite_config, data_dir) if stage0 is not None else []
    resume_dir = paths.resume_dir(out_dir)
    if samples:
        set_seed(config.init_seed)
        for name, param in model.named_parameters():
            param.requires_grad_(name.startswith("llm."))
        families = suite_families(suite_config)
        collator = Collator.for_model(model, families, supervise_prompt=family.stage0_prompt_loss)
        settings = FitSettings.of(stage0, params.train)
        tasks = ", ".join(f"'{task}'" for task in dict.fromkeys(sample.task for sample in samples))
        log(f"stage 0: {len(samples)} samples of {tasks}, {stage0.steps} steps")
        started = time.perf_counter()
        dataset = InstructionDataset(samples, data_dir, processor)
        result = fit(model, dataset, collator, settings, log=log, resume_dir=resume_dir)
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
    discard_state(resume_dir)
