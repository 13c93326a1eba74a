"""The ``hf`` backbone family: pretrained parts named by hub id or local path.

Any ``AutoModelForCausalLM`` LLM; a vision tower loadable with ``AutoModel`` (CLIP, SigLIP, ...)
with its ``AutoImageProcessor``; an audio encoder loadable with ``AutoModel`` (Whisper's encoder,
wav2vec2, ...) with its ``AutoFeatureExtractor``. The placeholder and answer tokens are added to the
tokenizer and the LLM's embeddings resized; projectors are initialised from ``init_seed``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from omegaconf import MISSING

from mmcl.config.schema import BackboneConfig, SuiteConfig
from mmcl.models.backbones import BACKBONES
from mmcl.models.backbones.base import BackboneFamily


@dataclass
class HFConfig(BackboneConfig):
    family: str = "hf"
    llm: str = MISSING  # hub id or local path of a causal LM
    image_encoder: str | None = None  # hub id or local path; also encodes video frames
    audio_encoder: str | None = None


@BACKBONES.register("hf", HFConfig)
class HF(BackboneFamily):
    config: HFConfig

    def build(self, suite: SuiteConfig, data_dir: Path):
        from transformers import (
            AutoFeatureExtractor,
            AutoImageProcessor,
            AutoModel,
            AutoModelForCausalLM,
            AutoTokenizer,
        )

        from mmcl.data.vocab import EXTRA_SPECIAL_TOKENS
        from mmcl.models.mllm import AudioEncoder, ImageEncoder

        cfg = self.config
        tokenizer = AutoTokenizer.from_pretrained(cfg.llm)
        tokenizer.add_special_tokens({"additional_special_tokens": EXTRA_SPECIAL_TOKENS})
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        llm = AutoModelForCausalLM.from_pretrained(cfg.llm, attn_implementation=cfg.attn_implementation)
        llm.resize_token_embeddings(len(tokenizer))
        image_encoder = audio_encoder = image_processor = feature_extractor = None
        if cfg.image_encoder:
            image_encoder = ImageEncoder(AutoModel.from_pretrained(cfg.image_encoder))
            image_processor = AutoImageProcessor.from_pretrained(cfg.image_encoder)
        if cfg.audio_encoder:
            audio_encoder = AudioEncoder(AutoModel.from_pretrained(cfg.audio_encoder))
            feature_extractor = AutoFeatureExtractor.from_pretrained(cfg.audio_encoder)
        return self.multimodal(llm, tokenizer, (image_encoder, image_processor), (audio_encoder, feature_extractor))
