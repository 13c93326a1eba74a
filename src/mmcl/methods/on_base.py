"""Methods built on another method: they train what their ``base`` trains and add something on top.

``base: lora`` trains one LoRA adapter on the LLM and the projectors, ``base: finetune`` the whole
LLM and the projectors. The config carries the settings of both (only the chosen base's apply), so
one params entry can switch bases without changing its other settings.
"""

from __future__ import annotations

from dataclasses import dataclass

from mmcl.core.registry import ConfigError, closest
from mmcl.methods.base import CLMethod
from mmcl.methods.finetune import Finetune, FinetuneConfig
from mmcl.methods.lora import LoRA, LoraConfig

BASES = {"lora": LoRA, "finetune": Finetune}


@dataclass
class OnBaseConfig(LoraConfig, FinetuneConfig):
    """Only the chosen base's settings apply: LoRA's r, alpha, ... or finetune's train_llm."""

    base: str = "lora"  # lora | finetune: what is trained

    def __post_init__(self):
        # A config dataclass has no other place to check a choice before any job runs.
        if self.base not in BASES:
            raise ConfigError(
                f"base '{self.base}' is not a method it can build on"
                f"{closest(self.base, BASES)}; choose one of: {', '.join(BASES)}"
            )


class OnBase(CLMethod):
    """Shapes the model and picks the trained parameters as the base method does."""

    config: OnBaseConfig

    def __init__(self, config: OnBaseConfig):
        super().__init__(config)
        self.base = BASES[config.base](config)

    def prepare_model(self, model):
        self.base.prepare_model(model)

    def trainable_parameters(self, model):
        return self.base.trainable_parameters(model)

    def merged_weights(self, model):
        return self.base.merged_weights(model)

    def merge(self, model, merged):
        self.base.merge(model, merged)
