"""MoDE (Wei et al., NeurIPS 2025): modality-decoupled experts and self-distillation on image generation.

For unified backbones, whose images are tokens of the LLM's vocabulary (``model.image_token_range``,
the image start/end markers included). Each adapted MLP projection holds a T-MoE, ``experts`` LoRA
experts mixed by a dense softmax router, for text tokens, and a V-Adapter, one LoRA, for image tokens;
a token's modality is its id, not a router's choice (``mmcl.methods.experts``). Text-loss updates thus
never touch the V-Adapter through text tokens (it still learns from the image tokens of understanding
prompts).

Every step also distils on ``kd.per_step`` image-generation sequences (prompt + image tokens): of the
suite's ``generation`` tasks, or with ``kd.dataset`` of a captioning dataset's training pairs read the
other way round, caption in, image out (MoDE's LAION pairs; a real backbone's suite has no generation
task, as its images cannot be decoded and judged here). The teacher is the same model with every adapter
disabled (the frozen base; no second copy), the student routes the whole sequence through the V-Adapter,
both restricted to the image vocabulary, and the loss is ``CE + λ · T² · mean KL(P_teacher^(K) ||
P_student^(K))`` with both distributions renormalised on the teacher's top-K tokens at each attended position.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mmcl.data.families import generation_tasks
from mmcl.data.families.generation import draw_caption
from mmcl.data.generators.from_datasets import dataset_split
from mmcl.data.records import load_split
from mmcl.methods import METHODS
from mmcl.methods.moelora import MoELoRA, MoELoRAConfig


@dataclass
class ModeKDConfig:
    top_k: int = 256  # K, capped at the size of the image vocabulary
    # T. The official code divides the logits by T before its KL function, which divides them by T again:
    # its effective temperature is T² = 4, with the factor T² = 4. Here T is applied once.
    temperature: float = 2.0
    weight: float = 0.3  # λ; 0 switches the distillation off
    per_step: int = 4  # generation sequences distilled on per step
    # A converted captioning dataset (`datasets:`, image) whose training pairs are distilled on, caption as
    # the prompt and image as the target; null: the suite's generation tasks.
    dataset: str | None = None


@dataclass
class MoDEConfig(MoELoRAConfig):
    kd: ModeKDConfig = field(default_factory=ModeKDConfig)
    train_projectors: bool = False  # MoDE trains only its adapters


@METHODS.register("mode", MoDEConfig)
class MoDE(MoELoRA):
    config: MoDEConfig

    def model_problem(self, model):
        if not isinstance(getattr(model, "image_token_range", None), range):
            return (
                f"mode routes each token by its id, but this backbone ({type(model).__name__}) has no "
                "image_token_range: use a unified backbone, whose images are tokens of the LLM's vocabulary"
            )
        return None

    def image_vocabulary(self, model):
        if problem := self.model_problem(model):
            raise ValueError(problem)
        return model.image_token_range

    def datasets(self) -> dict[str, tuple[str, str]]:
        kd = self.config.kd
        return {kd.dataset: ("captioning", "image")} if kd.dataset and kd.weight else {}

    def stage_settings(self, stage):
        settings = super().stage_settings(stage)
        if self.config.kd.dataset is None:  # so that stages distilling on the suite's tasks keep their fingerprint
            del settings["kd"]["dataset"]
        return settings

    def suite_problem(self, suite):
        kd = self.config.kd
        if kd.weight and not kd.dataset and not generation_tasks(suite):
            return (
                "the distillation runs on the suite's image-generation tasks (family `generation`) and it has none; "
                "name a captioning dataset (image-text pairs) in `kd.dataset`, or set `kd.weight: 0`"
            )
        return None

    def before_stage(self, model, context):
        from mmcl.engine.distill import SequencePool

        self.pool = None
        if not self.config.kd.weight:
            return
        if problem := self.suite_problem(context.suite):
            raise ValueError(f"mode: {problem}")
        data_dir = context.dataset.data_dir
        if self.config.kd.dataset:
            samples = [draw_caption(s) for s in dataset_split(data_dir.parent, self.config.kd.dataset, "train")]
        else:
            samples = load_split(data_dir, generation_tasks(context.suite), "train")
        self.pool = SequencePool(samples, context.dataset, context.collator, f"{context.collator.seed}/kd")
        self.vocabulary = self.image_vocabulary(model)

    def loss(self, model, batch, outputs, step):
        if self.pool is None:
            return outputs.loss
        return outputs.loss + self.config.kd.weight * self.distillation(model, step, batch["input_ids"].device)

    def distillation(self, model, step: int, device):
        """The KL term on step ``step``'s generation sequences."""
        import torch

        from mmcl.methods.experts import adapters_disabled, every_token_image

        kd = self.config.kd
        gen = self.pool.batch(self.pool.picks(step, kd.per_step), device)
        inputs = (gen["input_ids"], gen["attention_mask"])
        with torch.no_grad(), adapters_disabled(model):
            teacher = model(*inputs, media=gen["media"]).logits
        with every_token_image(model):
            student = model(*inputs, media=gen["media"]).logits
        return image_kd(student, teacher, gen["attention_mask"], self.vocabulary, kd.top_k, kd.temperature)


def image_kd(student, teacher, attention_mask, image_ids: range, top_k: int, temperature: float):
    """T² · mean over attended positions of KL(P_teacher^(K) || P_student^(K)) on the image vocabulary.

    ``student``, ``teacher``: (batch, length, vocab) logits; both are restricted to ``image_ids`` (text
    tokens get no probability) and renormalised on the teacher's top-K image tokens at each position.
    Padding is left out (the official code, at batch size 1, has none and averages over every position).
    """
    from mmcl.engine.distill import topk_kl

    attended = attention_mask.bool()
    image = slice(image_ids.start, image_ids.stop)
    teacher = teacher[attended][:, image].float()
    top = teacher.topk(min(top_k, teacher.shape[-1]), dim=-1)
    return topk_kl(student[attended][:, image], top.values, top.indices, temperature)
