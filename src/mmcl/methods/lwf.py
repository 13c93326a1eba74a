"""Learning without Forgetting: distil the previous model's outputs on the current task's inputs.

On top of sequential LoRA. The previous model labels a pool of the current task's samples once, in
the stage's ``teach`` job (top-K logits, cached); each step then adds the KL to those outputs on a
few pool samples to the task loss, so training never holds the previous model.
"""

from __future__ import annotations

from dataclasses import dataclass

from mmcl.methods import METHODS
from mmcl.methods.lora import LoRA, LoraConfig


@dataclass
class LwFConfig(LoraConfig):
    weight: float = 1.0  # of the KL term
    temperature: float = 2.0
    per_step: int = 4  # pool samples distilled on per step
    pool: int = 512  # current-task samples the teacher labels
    top_k: int = 64  # teacher logits kept per position


@METHODS.register("lwf", LwFConfig)
class LwF(LoRA):
    config: LwFConfig
    LOSS_SETTINGS = ("weight", "temperature", "per_step")  # used from the second stage on

    def required_artifacts(self, stage):
        return super().required_artifacts(stage) + (["teacher"] if stage.previous else [])

    def stage_settings(self, stage):
        settings = super().stage_settings(stage)
        return settings if stage.previous else {k: v for k, v in settings.items() if k not in self.LOSS_SETTINGS}

    def teacher_settings(self):
        return {"pool": self.config.pool, "top_k": self.config.top_k}

    def teach(self, model, context, out_dir):
        from mmcl.engine.distill import fixed_target, teach

        pool = [fixed_target(s, s.answers[0]) for s in context.dataset.samples[: self.config.pool]]
        teach(model, pool, context.dataset, context.collator, self.config.top_k).save(out_dir, "current")

    def before_stage(self, model, context):
        from mmcl.engine.distill import Distiller, DistillSet

        self.distiller = None
        if "teacher" in context.artifacts:
            cached = DistillSet.load(context.artifacts["teacher"], "current", context.dataset.data_dir)
            self.distiller = Distiller(cached, context.dataset, context.collator, context.collator.seed)

    def loss(self, model, batch, outputs, step):
        if self.distiller is None:
            return outputs.loss
        picks = self.distiller.picks(step, self.config.per_step)
        pool_batch = self.distiller.batch(picks, batch["input_ids"].device)
        kl = self.distiller.kl(model(**pool_batch), picks, self.config.temperature)
        return outputs.loss + self.config.weight * kl
