"""The ``tiny`` backbone family: small random-init configs of the same Hugging Face classes real
backbones use (a Llama-style LLM, a CLIP vision tower, a Whisper encoder), sized for a laptop CPU.

Its LLM starts from scratch, so stage 0 trains it on the suite's text-only task before any
continual stage: that gives every method a "base LLM" with knowledge to lose. Its encoders start
random too, so before that they are pretrained on the suite's perception sets (tagged media), the
way real backbones bring pretrained CLIP and Whisper encoders.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from mmcl.config.ranges import PROPER_FRACTION, non_negative, positive, ranged
from mmcl.config.schema import BackboneConfig, SuiteConfig
from mmcl.models.backbones import BACKBONES
from mmcl.models.backbones.base import BackboneFamily, PerceptionSettings


@dataclass
class TinyLLMConfig:
    arch: str = "llama"  # any transformers model_type with the usual size names (llama, gpt_neox, qwen2, ...)
    hidden_size: int = positive(128)
    layers: int = positive(2)
    heads: int = positive(4)
    intermediate_size: int = positive(256)
    max_positions: int = positive(256)


def tiny_llm(config: TinyLLMConfig, tokenizer):
    """A random-init causal LM of ``config``'s size over ``tokenizer``'s vocabulary (input and output
    embeddings tied)."""
    from transformers import AutoConfig, AutoModelForCausalLM

    llm_config = AutoConfig.for_model(
        config.arch,
        vocab_size=len(tokenizer),
        hidden_size=config.hidden_size,
        num_hidden_layers=config.layers,
        num_attention_heads=config.heads,
        num_key_value_heads=config.heads,
        intermediate_size=config.intermediate_size,
        max_position_embeddings=config.max_positions,
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    return AutoModelForCausalLM.from_config(llm_config)


@dataclass
class TinyVisionConfig:
    hidden_size: int = positive(64)
    layers: int = positive(2)
    heads: int = positive(4)
    patch_size: int = positive(8)


@dataclass
class TinyAudioConfig:
    d_model: int = positive(64)
    layers: int = positive(2)
    heads: int = positive(4)
    mel_bins: int = positive(40)
    hop_length: int = positive(320)  # 1 s at 16 kHz -> 50 mel frames -> 25 encoder tokens


@dataclass
class Stage0Config:
    steps: int = positive(600)
    batch_size: int = positive(32)
    lr: float = positive(3e-3)
    warmup_ratio: float = ranged(0.05, PROPER_FRACTION)
    grad_clip: float = non_negative(1.0)


@dataclass
class EncoderPretrainingConfig:
    """Perception pretraining of the random-init encoders on the suite's tagged media, before stage 0
    (see ``mmcl.engine.perception``); an encoder missing from ``steps`` stays random."""

    steps: dict[str, int] = field(default_factory=lambda: {"image": 1500, "audio": 800})
    batch_size: int = positive(64)
    lr: float = positive(2e-3)


@dataclass
class TinyConfig(BackboneConfig):
    family: str = "tiny"
    llm: TinyLLMConfig = field(default_factory=TinyLLMConfig)
    image_encoder: TinyVisionConfig = field(default_factory=TinyVisionConfig)
    audio_encoder: TinyAudioConfig = field(default_factory=TinyAudioConfig)
    encoder_pretraining: EncoderPretrainingConfig = field(default_factory=EncoderPretrainingConfig)
    stage0: Stage0Config = field(default_factory=Stage0Config)


@BACKBONES.register("tiny", TinyConfig)
class Tiny(BackboneFamily):
    config: TinyConfig

    def build(self, suite: SuiteConfig, data_dir: Path):
        from transformers import (
            AutoTokenizer,
            CLIPImageProcessor,
            CLIPVisionConfig,
            CLIPVisionModel,
            WhisperConfig,
            WhisperFeatureExtractor,
            WhisperModel,
        )

        from mmcl.models.mllm import AudioEncoder, ImageEncoder

        cfg, world = self.config, suite.world
        tokenizer = AutoTokenizer.from_pretrained(Path(data_dir) / "tokenizer")
        llm = tiny_llm(cfg.llm, tokenizer)

        size = world.image_size
        vision = CLIPVisionModel(
            CLIPVisionConfig(
                image_size=size,
                patch_size=cfg.image_encoder.patch_size,
                hidden_size=cfg.image_encoder.hidden_size,
                intermediate_size=2 * cfg.image_encoder.hidden_size,
                num_hidden_layers=cfg.image_encoder.layers,
                num_attention_heads=cfg.image_encoder.heads,
            )
        )
        image_processor = CLIPImageProcessor(size={"shortest_edge": size}, crop_size={"height": size, "width": size})

        seconds = math.ceil(world.audio_seconds)  # Whisper features cover whole seconds
        frames = seconds * world.sample_rate // cfg.audio_encoder.hop_length
        a = cfg.audio_encoder
        whisper = WhisperModel(
            WhisperConfig(
                num_mel_bins=a.mel_bins,
                d_model=a.d_model,
                encoder_layers=a.layers,
                encoder_attention_heads=a.heads,
                encoder_ffn_dim=2 * a.d_model,
                max_source_positions=frames // 2,  # the encoder's stride-2 convolution halves the frames
                # the decoder is unused; keep it minimal
                decoder_layers=1,
                decoder_attention_heads=1,
                decoder_ffn_dim=8,
                max_target_positions=4,
                vocab_size=4,
                pad_token_id=0,
                bos_token_id=1,
                eos_token_id=2,
                decoder_start_token_id=1,
            )
        )
        feature_extractor = WhisperFeatureExtractor(
            feature_size=a.mel_bins,
            sampling_rate=world.sample_rate,
            hop_length=a.hop_length,
            chunk_length=seconds,
        )
        return self.multimodal(
            llm, tokenizer, (ImageEncoder(vision), image_processor), (AudioEncoder(whisper), feature_extractor)
        )

    def encoder_pretraining(self):
        pretraining = self.config.encoder_pretraining
        return {
            modality: PerceptionSettings(steps, pretraining.batch_size, pretraining.lr)
            for modality, steps in pretraining.steps.items()
            if steps > 0
        }

    def stage0(self) -> Stage0Config:
        return self.config.stage0
