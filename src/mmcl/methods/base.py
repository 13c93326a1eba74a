"""The hooks a continual-learning method implements.

The training job calls them in this order for every stage::

    method = Method(config)
    method.model_problem(model)          # None, or why it cannot train this backbone's model (refused)
    method.prepare_model(model)          # change the architecture (adapters) before weights are loaded
    <previous stage's checkpoint and method.load_state_dict(...) are loaded>
    method.before_stage(model, context)  # e.g. read cached teachers' outputs
    names = method.trainable_parameters(model)
    for step, batch: loss = method.loss(model, batch, outputs, step)
    method.after_stage(model, context)   # e.g. compute a Fisher matrix, fuse weights
    <checkpoint saved with method.state_dict()>

Evaluation calls only ``prepare_model`` before loading a checkpoint. A stage reads cached artifacts,
each made by its own job before training (``required_artifacts``): a method that distils from the
previous model asks for a ``teacher`` (the workflow runs ``method.teach(previous_model, context,
out_dir)``, so the training job never holds two models), and any method with ``replay_fraction`` > 0
gets a ``replay`` buffer from the second stage on (``mmcl replay``; the training job mixes it into
the stage's data, see ``mmcl.data.replay``). The workflow learns how a run is shaped
(``schedule``), what a stage reads and which settings matter to a stage (``stage_settings``,
``teacher_settings``: a stage re-runs only when those change) without importing torch: method
modules import heavy libraries inside their hooks, because the Snakefile imports every method
module to validate ``params.yaml``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from mmcl.config.fingerprint import to_plain
from mmcl.config.schema import MethodConfig, SuiteConfig

if TYPE_CHECKING:
    from mmcl.core.plan import Stage
    from mmcl.engine.batching import Collator, InstructionDataset
    from mmcl.models.mllm import MultimodalLM


@dataclass
class StageContext:
    """What a stage's hooks may use besides the model: its data, and the artifacts it asked for."""

    stage: Stage
    dataset: InstructionDataset  # the stage's training samples
    collator: Collator
    suite: SuiteConfig  # its tasks (family, modality) and generator
    artifacts: dict[str, Path] = field(default_factory=dict)  # name (see required_artifacts) -> directory
    log: Callable[[str], None] = print
    # A step's global batch (train.batch_size), whatever micro-batches and processes split it into: what a
    # loss term over an augmented batch weighs its extra samples against.
    batch_size: int = 1


class CLMethod:
    name: ClassVar[str]
    config_class: ClassVar[type] = MethodConfig
    schedule: ClassVar[str] = "sequential"  # sequential | joint | none (see mmcl.core.plan)

    def __init__(self, config: MethodConfig):
        self.config = config

    def required_artifacts(self, stage: Stage) -> list[str]:
        """Names of cached artifacts this stage reads (``replay``: the rehearsal buffer; ``teacher``: made
        by ``teach``). A method that adds its own extends this list."""
        return ["replay"] if self.config.replay_fraction and stage.previous else []

    def datasets(self) -> dict[str, tuple[str, str]]:
        """Converted datasets (``datasets:``) whose train split its stages read besides the suite's, each
        with the (family, modality) it must hold: checked at load, converted before the stages run."""
        return {}

    def suite_problem(self, suite: SuiteConfig) -> str | None:
        """Why its stages cannot run on ``suite`` (None: they can), checked at load for every grid listing it."""
        return None

    def model_problem(self, model: MultimodalLM) -> str | None:
        """Why its stages cannot train ``model`` (None: they can), asked before ``prepare_model`` changes it."""
        return None

    def stage_settings(self, stage: Stage) -> dict:
        """The settings that shape this stage's training (all of them, unless a method knows better)."""
        settings = to_plain(self.config)
        if "replay" not in self.required_artifacts(stage):
            # The fraction shapes a stage only through its buffer: changing it re-runs no first stage,
            # and stages of methods without rehearsal keep the fingerprint they had before it existed.
            del settings["replay_fraction"]
        return settings

    def teacher_settings(self) -> dict:
        """The settings that shape the cached teacher outputs."""
        return {}

    def teach(self, model: MultimodalLM, context: StageContext, out_dir: Path) -> None:
        """Run the previous stage's model (``model``) and write what this stage distils from to ``out_dir``."""
        raise NotImplementedError(f"method '{self.name}' asks for a teacher artifact but does not define teach()")

    def prepare_model(self, model: MultimodalLM) -> None:
        """Modify the model's structure; called before any checkpoint is loaded into it."""

    def trainable_parameters(self, model: MultimodalLM) -> Iterable[str]:
        """Names of the parameters the optimizer updates during this stage."""
        return []

    def merged_weights(self, model: MultimodalLM) -> list[str]:
        """The model's tensors that ``merge`` folds the method's trained deltas into for inference. [] (the
        default): nothing to fold, because the method trains the weights themselves or its deltas depend on
        the input (routed experts); evaluation then runs the model as trained."""
        return []

    def merge(self, model: MultimodalLM, merged: bool) -> None:
        """Fold the deltas into ``merged_weights`` (True), or take them out again (False)."""

    def before_stage(self, model: MultimodalLM, context: StageContext) -> None:
        pass

    def loss(self, model: MultimodalLM, batch: dict, outputs, step: int):
        """Training objective of step ``step``'s batch; the default is the next-token loss on answer tokens."""
        return outputs.loss

    def after_stage(self, model: MultimodalLM, context: StageContext) -> None:
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
