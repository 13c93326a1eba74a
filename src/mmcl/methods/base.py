"""The hooks a continual-learning method implements.

The training job calls them in this order for every stage::

    method = Method(config)
    method.prepare_model(model)          # change the architecture (adapters) before weights are loaded
    <previous stage's checkpoint and method.load_state_dict(...) are loaded>
    method.before_stage(model, stage)    # e.g. snapshot a teacher, compute a Fisher matrix
    names = method.trainable_parameters(model)
    for batch: loss = method.loss(model, batch, outputs)
    method.after_stage(model, stage)     # e.g. merge weights, consolidate
    <checkpoint saved with method.state_dict()>

Evaluation calls only ``prepare_model`` before loading a checkpoint. Class attributes tell the
workflow how a run is shaped (``schedule``) and which cached artifacts a stage reads
(``required_artifacts``), without importing torch: method modules import heavy libraries inside
their hooks, because the Snakefile imports every method module to validate ``params.yaml``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, ClassVar

from mmcl.config import MethodConfig

if TYPE_CHECKING:
    from mmcl.models.mllm import MultimodalLM
    from mmcl.plan import Stage


class CLMethod:
    name: ClassVar[str]
    config_class: ClassVar[type] = MethodConfig
    schedule: ClassVar[str] = "sequential"  # sequential | joint | none (see mmcl.plan)

    def __init__(self, config: MethodConfig):
        self.config = config

    @classmethod
    def required_artifacts(cls, stage: Stage) -> list[str]:
        """Names of cached artifacts (teachers' outputs, pseudo-targets, replay buffers) this stage reads."""
        return []

    def prepare_model(self, model: MultimodalLM) -> None:
        """Modify the model's structure; called before any checkpoint is loaded into it."""

    def trainable_parameters(self, model: MultimodalLM) -> Iterable[str]:
        """Names of the parameters the optimizer updates during this stage."""
        return []

    def before_stage(self, model: MultimodalLM, stage: Stage) -> None:
        pass

    def loss(self, model: MultimodalLM, batch: dict, outputs):
        """Training objective of one batch; the default is the next-token loss on answer tokens."""
        return outputs.loss

    def after_stage(self, model: MultimodalLM, stage: Stage) -> None:
        pass

    def state_dict(self) -> dict:
        """Tensors the method carries to the next stage (saved with the checkpoint as safetensors)."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


def parameters_under(model: MultimodalLM, *prefixes: str) -> list[str]:
    return [name for name, _ in model.named_parameters() if name.startswith(prefixes)]


def backbone_parts(model: MultimodalLM, llm: bool = True, projectors: bool = True) -> list[str]:
    """LLM and/or projector parameters, plus the encoders when the backbone does not freeze them."""
    prefixes = ("llm.",) * llm + ("projectors.",) * projectors
    prefixes += () if model.freeze_encoders else ("encoders.",)
    return parameters_under(model, *prefixes)
