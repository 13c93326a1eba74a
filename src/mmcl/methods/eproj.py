"""Expanding projectors (EProj): the LLM-specific expansion baseline. Each modality has its own
projector, and a stage trains only the projector of its own modality.

The LLM stays frozen and gets no adapter. So nothing is shared between modalities: the LLM's
stage-0 knowledge cannot be forgotten, and the input's modality picks its projector at inference
(``MultimodalLM`` keeps one projector per modality). What is left is forgetting within a modality:
a QA stage retrains the projector that a captioning stage of the same modality trained before.
Encoders are not trained, even when the backbone unfreezes them, because video frames share the
image encoder. A text-only task has no projector, so a stage with one is refused.
"""

from __future__ import annotations

from mmcl.core.registry import ConfigError
from mmcl.methods import METHODS
from mmcl.methods.base import CLMethod, parameters_under


@METHODS.register("eproj")
class EProj(CLMethod):
    modalities: tuple[str, ...] = ()  # of the current stage, set by before_stage

    def before_stage(self, model, context):
        modality_of = {task: context.suite.tasks[task].modality for task in context.stage.tasks}
        if without := sorted(task for task, modality in modality_of.items() if modality not in model.projectors):
            raise ConfigError(
                f"eproj trains only projectors, but stage '{context.stage.key}' trains {', '.join(without)}, "
                "whose modality has none; remove such tasks from the orders eproj runs on, or use another method"
            )
        self.modalities = tuple(sorted(set(modality_of.values())))

    def trainable_parameters(self, model):
        return parameters_under(model, *(f"projectors.{modality}." for modality in self.modalities))
