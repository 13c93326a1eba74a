"""What a backbone family provides: an untrained assembly of the multimodal model from its config."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from mmcl.data.records import Sample, load_split

if TYPE_CHECKING:
    from mmcl.config.schema import BackboneConfig, SuiteConfig
    from mmcl.data.media import MediaProcessor
    from mmcl.models.mllm import MultimodalLM


@dataclass
class PerceptionSettings:
    """How long one random-init encoder learns its suite's perception set (``mmcl.engine.perception``)."""

    steps: int
    batch_size: int
    lr: float
    warmup_ratio: float = 0.05


class BackboneFamily:
    # Whether stage 0 supervises the prompt too (language modelling on the whole text) or only the answers.
    stage0_prompt_loss: bool = True

    def __init__(self, config: BackboneConfig, artifacts: dict[str, Path] | None = None):
        self.config = config
        self.artifacts = artifacts or {}  # name (see required_artifacts) -> directory

    def required_artifacts(self) -> list[str]:
        """Artifacts built by their own jobs before the model is assembled (e.g. an image tokenizer)."""
        return []

    def assemble(self, suite: SuiteConfig, data_dir: Path) -> tuple[MultimodalLM, MediaProcessor]:
        """The model before any continual training, what it draws at random drawn from ``init_seed``."""
        import torch

        torch.manual_seed(self.config.init_seed)
        return self.build(suite, data_dir)

    def build(self, suite: SuiteConfig, data_dir: Path) -> tuple[MultimodalLM, MediaProcessor]:
        """The family's model and its media processor (``assemble`` has seeded torch)."""
        raise NotImplementedError

    def multimodal(self, llm, tokenizer, image=(None, None), audio=(None, None)) -> tuple[MultimodalLM, MediaProcessor]:
        """A ``MultimodalLM`` of ``llm`` and the (encoder, processor) pairs given, shaped by the config's
        projector, video and freezing settings, with its media processor and its media tokens counted."""
        from mmcl.data.media import MediaProcessor
        from mmcl.models.mllm import MultimodalLM

        config = self.config
        model = MultimodalLM(
            llm,
            tokenizer,
            image[0],
            audio[0],
            projector_hidden=config.projector_hidden,
            video_temporal=config.video.temporal,
            freeze_encoders=config.freeze_encoders,
        )
        processor = MediaProcessor(image[1], audio[1], config.video.frames)
        model.count_media_tokens(processor)
        return model, processor

    def encoder_pretraining(self) -> dict[str, PerceptionSettings]:
        """Perception pretraining settings per encoder modality (empty: the encoders come pretrained)."""
        return {}

    def stage0(self):
        """Settings of the stage 0 that teaches the LLM the suite's world, or None to skip it."""
        return None

    def stage0_samples(self, suite: SuiteConfig, data_dir: Path) -> list[Sample]:
        """What stage 0 trains on: the training split of the suite's text tasks."""
        return load_split(data_dir, suite.text_tasks, "train")
