"""Weight fusion (MoInCL's ``llm_fusion``): after each stage, the trained LLM weights are interpolated
with their values before the stage, θ ← (1−α)·θ_prev + α·θ.

It trains what ``lora`` trains: one adapter on the LLM, continued across stages, and the projectors.
Only the adapter is fused, unless ``fuse_projectors`` is set. θ_prev is a CPU copy of those weights,
taken before the stage, not a second model. The first stage is not fused: nothing has been learned
yet that needs keeping. MoInCL also fuses only from its second step on.
"""

from __future__ import annotations

from dataclasses import dataclass

from mmcl.methods import METHODS
from mmcl.methods.lora import LoRA, LoraConfig


@dataclass
class WeightFusionConfig(LoraConfig):
    fusion_alpha: float = 0.5  # α: the weight of the stage's own weights (`alpha` is LoRA's scaling)
    fuse_projectors: bool = False


def snapshot(model, names) -> dict:
    """CPU copies of the named parameters: the θ_prev of ``fuse``."""
    params = dict(model.named_parameters())
    return {name: params[name].detach().to("cpu", copy=True) for name in names}


def fuse(model, previous: dict, alpha: float) -> None:
    """θ ← (1−α)·θ_prev + α·θ, in place, for every parameter in ``previous`` (name -> θ_prev)."""
    import torch

    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, prev in previous.items():
            param = params[name]
            param.copy_((1 - alpha) * prev.to(param) + alpha * param)


@METHODS.register("weight_fusion", WeightFusionConfig)
class WeightFusion(LoRA):
    config: WeightFusionConfig
    FUSION_SETTINGS = ("fusion_alpha", "fuse_projectors")  # used from the second stage on

    def stage_settings(self, stage):
        settings = super().stage_settings(stage)
        return settings if stage.previous else {k: v for k, v in settings.items() if k not in self.FUSION_SETTINGS}

    def fused_parameters(self, model) -> list[str]:
        parts = ("llm.", "projectors.") if self.config.fuse_projectors else ("llm.",)
        return [name for name in self.trainable_parameters(model) if name.startswith(parts)]

    def before_stage(self, model, context):
        self.previous = snapshot(model, self.fused_parameters(model)) if context.stage.previous else {}

    def after_stage(self, model, context):
        fuse(model, self.previous, self.config.fusion_alpha)
