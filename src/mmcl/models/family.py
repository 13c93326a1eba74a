"""What a backbone family provides: an untrained assembly of the multimodal model from its config."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mmcl.config import BackboneConfig, SuiteConfig
    from mmcl.data.records import Sample
    from mmcl.models.checkpoint import MediaProcessor
    from mmcl.models.mllm import MultimodalLM


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
        """The model before any continual training: projectors freshly initialised (seeded)."""
        raise NotImplementedError

    def encoder_pretraining(self) -> dict:
        """Perception pretraining settings per encoder modality (empty: the encoders come pretrained)."""
        return {}

    def stage0(self):
        """Settings of the stage 0 that teaches the LLM the suite's world, or None to skip it."""
        return None

    def stage0_samples(self, suite: SuiteConfig, data_dir: Path) -> list[Sample]:
        """What stage 0 trains on: the training split of the suite's text tasks."""
        from mmcl.training.jobs import load_split

        return load_split(data_dir, suite.text_tasks, "train")
