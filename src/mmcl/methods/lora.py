"""Sequential LoRA (SeqLoRA): one peft adapter on the LLM, continued from stage to stage.

The LLM's own weights stay frozen; the adapter and the projectors are trained at every stage.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mmcl.config.schema import MethodConfig
from mmcl.methods import METHODS
from mmcl.methods.base import CLMethod, backbone_parts, parameters_under


@dataclass
class LoraConfig(MethodConfig):
    r: int = 8
    alpha: int = 16
    dropout: float = 0.05
    target_modules: list[str] = field(default_factory=lambda: ["q_proj", "v_proj"])  # or ["all-linear"]
    use_rslora: bool = False
    train_projectors: bool = True


@METHODS.register("lora", LoraConfig)
class LoRA(CLMethod):
    config: LoraConfig

    def prepare_model(self, model):
        from peft import LoraConfig as PeftLoraConfig
        from peft import get_peft_model

        targets = self.config.target_modules
        adapter = PeftLoraConfig(
            r=self.config.r,
            lora_alpha=self.config.alpha,
            lora_dropout=self.config.dropout,
            target_modules=targets[0] if targets == ["all-linear"] else list(targets),
            use_rslora=self.config.use_rslora,
            task_type="CAUSAL_LM",
        )
        model.llm = get_peft_model(model.llm, adapter)

    def trainable_parameters(self, model):
        adapter = [name for name in parameters_under(model, "llm.") if ".lora_" in name]
        return adapter + backbone_parts(model, llm=False, projectors=self.config.train_projectors)

    def merged_weights(self, model):
        from peft.tuners.tuners_utils import BaseTunerLayer

        names = {id(parameter): name for name, parameter in model.named_parameters()}
        layers = (m for m in model.llm.modules() if isinstance(m, BaseTunerLayer))
        return [names[id(layer.get_base_layer().weight)] for layer in layers]

    def merge(self, model, merged):
        # W + (alpha / r) B A in place: one matrix product per adapted layer instead of three.
        if merged:
            model.llm.merge_adapter()
        else:
            model.llm.unmerge_adapter()
