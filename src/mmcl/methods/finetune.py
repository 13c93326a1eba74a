"""Naive sequential fine-tuning: every stage updates the whole LLM and the projectors (the lower bound)."""

from __future__ import annotations

from dataclasses import dataclass

from mmcl.config.schema import MethodConfig
from mmcl.methods import METHODS
from mmcl.methods.base import CLMethod, backbone_parts


@dataclass
class FinetuneConfig(MethodConfig):
    train_llm: bool = True
    train_projectors: bool = True


@METHODS.register("finetune", FinetuneConfig)
class Finetune(CLMethod):
    config: FinetuneConfig

    def trainable_parameters(self, model):
        return backbone_parts(model, llm=self.config.train_llm, projectors=self.config.train_projectors)
