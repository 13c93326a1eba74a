"""MoELoRA (CoIN, Chen et al. 2024): several LoRA experts per adapted layer, mixed by a learned router.

Every adapted linear layer of the LLM gets ``experts`` LoRA experts and a router: each token's output
is the base layer's plus the experts' outputs weighted by a dense softmax over the router's logits
(``mmcl.methods.experts``). Text and image tokens share all of them: the modality-coupled baseline
that MoDE decouples. One expert set is continued from stage to stage, as with ``lora``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mmcl.config.schema import MethodConfig
from mmcl.methods import METHODS
from mmcl.methods.base import CLMethod, backbone_parts


@dataclass
class MoELoRAConfig(MethodConfig):
    experts: int = 4  # E: LoRA experts per adapted layer
    r: int = 8
    alpha: int = 16  # each expert's scale is alpha / r
    dropout: float = 0.05
    target_modules: list[str] = field(default_factory=lambda: ["gate_proj", "up_proj", "down_proj"])
    train_projectors: bool = True  # a LLaVA-style backbone's projectors (a unified backbone has none)


@METHODS.register("moelora", MoELoRAConfig)
class MoELoRA(CLMethod):
    config: MoELoRAConfig

    def image_vocabulary(self, model) -> range | None:
        """The vocabulary ids whose tokens go to the visual adapter; None: one routed family for all."""
        return None

    def prepare_model(self, model):
        from mmcl.methods.experts import add_experts

        c = self.config
        add_experts(model.llm, c.target_modules, c.experts, c.r, c.alpha, c.dropout, self.image_vocabulary(model))

    def trainable_parameters(self, model):
        from mmcl.methods.experts import adapter_parameters

        projectors = backbone_parts(model, llm=False) if self.config.train_projectors else []
        return adapter_parameters(model) + projectors
