"""MoInCL (Pian et al., TMLR 2026): continual learning when both the modality and the task type change.

On top of sequential LoRA, training the adapter and the current modality's projector, from the
second stage on it adds two terms, each switchable for ablation (``ptgm.enabled``, ``ikd.enabled``):

- **PTGM**, pseudo-target generation: when the current task's type (captioning / QA) differs from
  a type already learned in the same modality, the previous model's knowledge of the old type is
  rehearsed on the *current* inputs. Current QA after captioning: the previous model captions the
  current inputs (greedy). Current captioning after QA: question-answer pairs come from the
  ground-truth captions (the suite generator's ``pseudo_qa``). ``per_batch`` pseudo samples per
  step are trained with the task loss, plus ``weight`` x KL to the previous model's logits on them.
- **IKD**, instruction-based distillation: ``per_step`` text-only instructions per step (the suite's
  text task, or a Natural-Instructions file: ``ikd.instructions``) on which the model is distilled
  toward the previous model (KL at ``temperature``).

Everything from the previous model is computed once by the stage's ``teach`` job and cached
(``mmcl.engine.distill``); ``fusion_alpha`` optionally interpolates toward the previous weights
after each stage, as the released code does (off by default: the paper does not describe it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from mmcl.config.ranges import positive
from mmcl.data import GENERATORS
from mmcl.data.instructions import read_natural_instructions
from mmcl.data.records import Sample, load_split, read_jsonl, split_path
from mmcl.methods import METHODS
from mmcl.methods.base import parameters_under
from mmcl.methods.lora import LoRA, LoraConfig
from mmcl.methods.weight_fusion import fuse, snapshot


@dataclass
class PTGMConfig:
    enabled: bool = True
    per_batch: int = 4  # k pseudo samples per step
    weight: float = 0.5  # lambda_kl of the KL on pseudo samples
    temperature: float = 5.0
    max_new_tokens: int = positive(24)  # pseudo captions by the previous model (greedy)


@dataclass
class IKDConfig:
    enabled: bool = True
    per_step: int = 4  # text instructions per step
    weight: float = 1.0
    temperature: float = 5.0
    # A Natural-Instructions task file or directory of them (real runs); None: the suite's text task.
    instructions: str | None = None


@dataclass
class MoInCLConfig(LoraConfig):
    ptgm: PTGMConfig = field(default_factory=PTGMConfig)
    ikd: IKDConfig = field(default_factory=IKDConfig)
    pool: int = 512  # samples the previous model labels per cached set
    top_k: int = 64  # teacher logits kept per position
    fusion_alpha: float | None = None  # theta <- (1 - a) theta_prev + a theta after each stage


@METHODS.register("moincl", MoInCLConfig)
class MoInCL(LoRA):
    config: MoInCLConfig

    def required_artifacts(self, stage):
        distils = stage.previous and (self.config.ptgm.enabled or self.config.ikd.enabled)
        return super().required_artifacts(stage) + (["teacher"] if distils else [])

    def stage_settings(self, stage):
        settings = super().stage_settings(stage)
        if stage.previous is None:  # nothing to distil from yet: only the LoRA settings shape it
            settings = {k: v for k, v in settings.items() if k not in ("ptgm", "ikd", "fusion_alpha")}
        return settings

    def teacher_settings(self):
        c = self.config
        ptgm, ikd = [c.ptgm.enabled, c.ptgm.max_new_tokens], [c.ikd.enabled, c.ikd.instructions]
        return {"pool": c.pool, "top_k": c.top_k, "ptgm": ptgm, "ikd": ikd}

    def trainable_parameters(self, model):
        adapter = [name for name in parameters_under(model, "llm.") if ".lora_" in name]
        return adapter + parameters_under(model, f"projectors.{self.modality}.")

    # --- the teach job: the previous model's pseudo targets and top-K logits ---

    def teach(self, model, context, out_dir):
        from mmcl.engine.distill import teach

        k = self.config.top_k
        model.eval()
        if self.config.ptgm.enabled and (pseudo := self.pseudo_samples(model, context)):
            teach(model, pseudo, context.dataset, context.collator, k).save(out_dir, "pseudo")
        if self.config.ikd.enabled:
            teach(model, self.instructions(context), context.dataset, context.collator, k).save(out_dir, "ikd")

    def pseudo_samples(self, model, context):
        """Samples of the old task type on the current inputs, or [] when PTGM does not apply."""
        from mmcl.engine.inference import generate

        old = old_task_type(context)
        if old is None:
            return []
        current = context.dataset.samples[: self.config.pool]
        family = context.suite.tasks[old].family
        if family == "captioning":  # the previous model describes the current inputs
            data_dir = context.dataset.data_dir
            instruction = read_jsonl(split_path(data_dir, old, "train"))[0].instruction
            prompts = [Sample(f"{s.id}-pseudo", old, s.modality, instruction, [], list(s.media)) for s in current]
            captions = generate(
                model, context.dataset.processor, context.collator, prompts, data_dir, 32,
                self.config.ptgm.max_new_tokens, next(model.parameters()).device,
            )  # fmt: skip
            return [Sample(p.id, old, p.modality, instruction, [captions[p.id]], p.media) for p in prompts]
        generator = GENERATORS.get(context.suite.generator)(context.suite)
        pairs = [generator.pseudo_qa(s) for s in current]
        return [
            Sample(f"{s.id}-pseudo", old, s.modality, question, [answer], list(s.media))
            for s, (question, answer) in zip(current, pairs, strict=True)
        ]

    def instructions(self, context):
        from mmcl.engine.distill import fixed_target

        if self.config.ikd.instructions:
            return read_natural_instructions(Path(self.config.ikd.instructions), self.config.pool)
        if not context.suite.text_tasks:
            raise ValueError(
                "moincl: IKD distils on the suite's text task or on `ikd.instructions` (a Natural-Instructions "
                "task file); set one of them, or `ikd.enabled: false`"
            )
        data_dir = context.dataset.data_dir
        samples = load_split(data_dir, context.suite.text_tasks, "train")
        return [fixed_target(s, s.answers[0]) for s in samples[: self.config.pool]]

    # --- training ---

    def before_stage(self, model, context):
        from mmcl.engine.distill import Distiller, DistillSet

        self.modality = context.dataset.samples[0].modality
        self.batch_size = context.batch_size
        self.distillers = {}
        teacher = context.artifacts.get("teacher")
        for name in ("pseudo", "ikd") if teacher else ():
            if (teacher / f"{name}.jsonl").exists():
                cached = DistillSet.load(teacher, name, context.dataset.data_dir)
                seed = f"{context.collator.seed}/{name}"
                self.distillers[name] = Distiller(cached, context.dataset, context.collator, seed)
        if self.config.fusion_alpha is not None:
            self.previous = snapshot(model, self.fused(model))

    def loss(self, model, batch, outputs, step):
        loss = outputs.loss
        if pseudo := self.distillers.get("pseudo"):
            c = self.config.ptgm
            picks = pseudo.picks(step, c.per_batch)
            out = model(**pseudo.batch(picks, batch["input_ids"].device))
            # CE over the step's augmented batch: its real samples (in whatever micro-batch) and k pseudo samples,
            # which every micro-batch runs alike and the loop's token shares count once per step
            real, extra = self.batch_size, len(picks)
            loss = (real * loss + extra * out.loss) / (real + extra)
            loss = loss + c.weight * pseudo.kl(out, picks, c.temperature)
        if ikd := self.distillers.get("ikd"):
            c = self.config.ikd
            picks = ikd.picks(step, c.per_step)
            out = model(**ikd.batch(picks, batch["input_ids"].device))
            loss = loss + c.weight * ikd.kl(out, picks, c.temperature)
        return loss

    def after_stage(self, model, context):
        if self.config.fusion_alpha is not None:
            fuse(model, self.previous, self.config.fusion_alpha)

    def fused(self, model):
        return [name for name in parameters_under(model, "llm.") if ".lora_" in name]


def old_task_type(context) -> str | None:
    """An earlier task of the current modality with the other task type (PTGM's case), if any."""
    tasks = context.suite.tasks
    current = tasks[context.stage.tasks[-1]]
    for name in reversed(context.stage.seen[:-1]):
        if tasks[name].modality == current.modality and tasks[name].family != current.family:
            return name
    return None
