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

from mmcl.config.ranges import PROPER_FRACTION, non_negative, positive, ranged
from mmcl.config.schema import BackboneConfig, SuiteConfig
from mmcl.data.families import generation_tasks
from mmcl.data.families.generation import read_back
from mmcl.data.records import load_split
from mmcl.models.backbones import BACKBONES
from mmcl.models.backbones.base import BackboneFamily
from mmcl.models.backbones.tiny import Stage0Config, TinyLLMConfig, tiny_llm

IMAGE_TOKENIZER = "image_tokenizer"  # the artifact an embedded unified backbone is assembled from


@dataclass
class ImageTokenizerConfig:
    """The embedded VQ-VAE (``mmcl.models.vq``), trained once per suite on its training images."""

    codebook_size: int = positive(256)
    code_dim: int = positive(32)
    hidden: int = positive(64)  # convolution channels
    downsample: int = positive(2)  # stride-2 steps: 32 px -> an 8x8 grid of codes (64 tokens per image)
    commitment: float = non_negative(0.25)  # weight of the encoder's commitment loss
    decay: float = ranged(0.99, PROPER_FRACTION)  # of the codebook's moving averages
    steps: int = positive(2000)
    batch_size: int = positive(32)
    lr: float = positive(2e-3)
    seed: int = 0


@dataclass
class UnifiedConfig(BackboneConfig):
    family: str = "unified"
    model: str | None = None  # hub id or local path of a Chameleon/Anole checkpoint; null: the embedded model
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

    def build(self, suite: SuiteConfig, data_dir: Path):
        if self.config.model is not None:
            return self.pretrained(self.config.model)
        if IMAGE_TOKENIZER not in self.artifacts:
            raise ValueError(
                f"the embedded unified backbone needs its {IMAGE_TOKENIZER} artifact; build it with "
                "`mmcl train-tokenizer` and pass its directory"
            )
        return self.embedded(data_dir, self.artifacts[IMAGE_TOKENIZER])

    def embedded(self, data_dir: Path, tokenizer_dir: Path):
        """The tiny LLM over the suite's words plus the trained VQ-VAE's codes."""
        from transformers import AutoTokenizer

        from mmcl.models.unified_lm import embedded_model, image_vocabulary
        from mmcl.models.vq import load_tokenizer

        tokenizer = AutoTokenizer.from_pretrained(Path(data_dir) / "tokenizer")
        vq, settings = load_tokenizer(tokenizer_dir)
        tokenizer.add_tokens(image_vocabulary(settings["codebook_size"]), special_tokens=True)
        return embedded_model(tiny_llm(self.config.llm, tokenizer), tokenizer, vq, settings)

    @staticmethod
    def pretrained(path: str):
        """A Chameleon/Anole checkpoint with its tokenizer (plus the prompt's special tokens) and image processor."""
        from transformers import AutoImageProcessor, AutoTokenizer

        from mmcl.data.vocab import EXTRA_SPECIAL_TOKENS
        from mmcl.models.unified_lm import chameleon_model, pretrained_class

        tokenizer = AutoTokenizer.from_pretrained(path)
        tokenizer.add_special_tokens({"additional_special_tokens": EXTRA_SPECIAL_TOKENS})
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        llm = pretrained_class(path).from_pretrained(path)
        llm.resize_token_embeddings(len(tokenizer))
        return chameleon_model(llm, tokenizer, AutoImageProcessor.from_pretrained(path))

    def stage0(self) -> Stage0Config | None:
        return self.config.stage0 if self.config.model is None else None

    def stage0_samples(self, suite: SuiteConfig, data_dir: Path):
        """The text tasks' training split, and each generation task's: every sample as it is (draw the
        image) and read back (its image, no instruction -> its answer)."""

        # at least one: the config requires it of a backbone that ``stage0_draws``
        drawing = generation_tasks(suite)
        generation = load_split(data_dir, drawing, "train")
        return super().stage0_samples(suite, data_dir) + generation + [read_back(s) for s in generation]
