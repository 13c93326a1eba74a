"""The ``unified`` backbone family: one autoregressive LM that reads and writes images as discrete tokens
(Chameleon/Anole style), for continual learning of understanding that must not cost generation.

The vocabulary holds the text tokens, one token per code of an image tokenizer, and the image start and
end markers, the codes and markers forming one contiguous block of ids (``image_token_range``). An image
in a prompt is ``<img> code ... </img>``; a generated image is the codes written after ``<img>``,
decoded to pixels by the tokenizer's decoder (``mmcl.models.unified_lm``).

- embedded (``model: null``): a tiny Llama over the suite's word vocabulary plus the codes of the VQ-VAE
  trained on the suite's images (``mmcl.models.vq``, its own job: ``mmcl train-tokenizer``). It starts
  from scratch, so stage 0 teaches it both directions on the suite's generation tasks: to draw the image
  a prompt asks for, and to say what a drawing shows (the prompt-free description of the same image);
  that gives it generation ability to lose and image tokens it can read.
- real (``model: <hub id or path>``): a ``ChameleonForConditionalGeneration`` checkpoint (Chameleon,
  Anole) with its tokenizer, image processor and VQ-GAN encoder, used as they are (no stage 0).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from mmcl.config import BackboneConfig, SuiteConfig
from mmcl.models import BACKBONES
from mmcl.models.family import BackboneFamily
from mmcl.models.tiny import Stage0Config, TinyLLMConfig

IMAGE_TOKENIZER = "image_tokenizer"  # the artifact an embedded unified backbone is assembled from


@dataclass
class ImageTokenizerConfig:
    """The embedded VQ-VAE (``mmcl.models.vq``), trained once per suite on its training images."""

    codebook_size: int = 256
    code_dim: int = 32
    hidden: int = 64  # convolution channels
    downsample: int = 2  # stride-2 steps: 32 px -> an 8x8 grid of codes (64 tokens per image)
    commitment: float = 0.25  # weight of the encoder's commitment loss
    decay: float = 0.99  # of the codebook's moving averages
    steps: int = 2000
    batch_size: int = 32
    lr: float = 2e-3
    seed: int = 0


@dataclass
class UnifiedConfig(BackboneConfig):
    family: str = "unified"
    model: str | None = None  # hub id or local path of a Chameleon/Anole checkpoint; null: the embedded model
    init_seed: int = 0
    llm: TinyLLMConfig = field(default_factory=TinyLLMConfig)  # the embedded model's LLM
    tokenizer: ImageTokenizerConfig = field(default_factory=ImageTokenizerConfig)  # the embedded model's images
    # 1,500 steps drew 36-63% of the test prompts right (two tokenizer runs), 3,000 steps 77% (measured)
    stage0: Stage0Config = field(default_factory=lambda: Stage0Config(steps=3000, batch_size=32, lr=3e-3))

    @property
    def generates_images(self) -> bool:
        return self.model is None  # transformers' Chameleon cannot decode its image tokens

    @property
    def stage0_draws(self) -> bool:
        return self.model is None


@BACKBONES.register("unified", UnifiedConfig)
class Unified(BackboneFamily):
    config: UnifiedConfig
    stage0_prompt_loss = False  # instruction tuning: the answers and the drawn images are the targets

    def required_artifacts(self) -> list[str]:
        return [IMAGE_TOKENIZER] if self.config.model is None else []

    def assemble(self, suite: SuiteConfig, data_dir: Path):
        from mmcl.models import unified_lm

        if self.config.model is not None:
            return unified_lm.assemble_pretrained(self.config.model)
        if IMAGE_TOKENIZER not in self.artifacts:
            raise ValueError(
                f"the embedded unified backbone needs its {IMAGE_TOKENIZER} artifact; build it with "
                "`mmcl train-tokenizer` and pass its directory"
            )
        return unified_lm.assemble_embedded(self.config, data_dir, self.artifacts[IMAGE_TOKENIZER])

    def stage0(self) -> Stage0Config | None:
        return self.config.stage0 if self.config.model is None else None

    def stage0_samples(self, suite: SuiteConfig, data_dir: Path):
        """The text tasks' training split, and each generation task's: every sample as it is (draw the
        image) and read back (its image, no instruction -> its answer)."""
        from mmcl.data.families.generation import read_back
        from mmcl.training.jobs import load_split

        # at least one: the config requires it of a backbone that ``stage0_draws``
        drawing = suite.generation_tasks
        generation = load_split(data_dir, drawing, "train")
        return super().stage0_samples(suite, data_dir) + generation + [read_back(s) for s in generation]
