"""What a backbone family provides: an untrained assembly of the multimodal model from its config."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mmcl.config import BackboneConfig, SuiteConfig
    from mmcl.models.checkpoint import MediaProcessor
    from mmcl.models.mllm import MultimodalLM


class BackboneFamily:
    def __init__(self, config: BackboneConfig):
        self.config = config

    def assemble(self, suite: SuiteConfig, data_dir: Path) -> tuple[MultimodalLM, MediaProcessor]:
        """The model before any continual training: projectors freshly initialised (seeded)."""
        raise NotImplementedError

    def encoder_pretraining(self) -> dict:
        """Perception pretraining settings per encoder modality (empty: the encoders come pretrained)."""
        return {}

    def stage0(self):
        """Settings of the text-only stage 0 that teaches the LLM the suite's world, or None to skip it."""
        return None
