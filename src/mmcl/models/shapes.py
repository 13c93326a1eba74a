"""Architecture shapes of the backbones' parts, for cost estimates (``mmcl plan``) and scale benchmarks.

A ``Shape`` is what a cost model needs of one transformer (an LLM or an encoder): depth, widths, heads,
vocabulary and parameter count. It is read from the part's ``config.json`` when its id is a local
directory or is in the Hugging Face cache (through ``transformers.AutoConfig``, imported only then), and
otherwise from ``KNOWN_CONFIGS``, the published config.json values of the hub ids the presets name.
Parameter counts are computed from the architecture (they match the published counts exactly for the
known ids, ``tests/test_plan_cost.py``). Nothing here imports torch unless a local config is read.

``config_kwargs`` gives a known id's values as ``transformers`` config arguments, to build a real-width
model with random weights and no download: ``AutoConfig.for_model(model_type, **kwargs)``.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field, replace
from pathlib import Path

from mmcl.config.schema import BackboneConfig, SuiteConfig
from mmcl.core.registry import ConfigError
from mmcl.models.backbones.hf import HFConfig
from mmcl.models.backbones.tiny import TinyConfig, TinyLLMConfig
from mmcl.models.backbones.unified import UnifiedConfig

# The published config.json values of the hub ids the presets and params.yaml name: architecture keys
# only (what a shape and a random-init model of the same width need), as `transformers` config arguments.
_LLAMA_3_2_1B = {
    "hidden_size": 2048,
    "intermediate_size": 8192,
    "num_hidden_layers": 16,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "head_dim": 64,
    "vocab_size": 128256,
    "max_position_embeddings": 131072,
    "rope_theta": 500000.0,
    "tie_word_embeddings": True,
}
_LLAMA_2_7B = {
    "hidden_size": 4096,
    "intermediate_size": 11008,
    "num_hidden_layers": 32,
    "num_attention_heads": 32,
    "num_key_value_heads": 32,
    "vocab_size": 32000,
    "max_position_embeddings": 4096,
    "tie_word_embeddings": False,
}
_CHAMELEON_7B = {
    "hidden_size": 4096,
    "intermediate_size": 11008,
    "num_hidden_layers": 32,
    "num_attention_heads": 32,
    "num_key_value_heads": 32,
    "vocab_size": 65536,
    "max_position_embeddings": 4096,
    "qk_layernorm": True,
    "tie_word_embeddings": False,
}


def _pythia(hidden: int, layers: int, heads: int) -> dict:
    return {
        "hidden_size": hidden,
        "intermediate_size": 4 * hidden,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "vocab_size": 50304,
        "rotary_pct": 0.25,
        "max_position_embeddings": 2048,
        "use_parallel_residual": True,
        "tie_word_embeddings": False,
    }


def _clip(image_size: int) -> dict:
    return {
        "projection_dim": 768,
        "text_config": {
            "hidden_size": 768,
            "intermediate_size": 3072,
            "num_hidden_layers": 12,
            "num_attention_heads": 12,
            "vocab_size": 49408,
            "max_position_embeddings": 77,
        },
        "vision_config": {
            "hidden_size": 1024,
            "intermediate_size": 4096,
            "num_hidden_layers": 24,
            "num_attention_heads": 16,
            "image_size": image_size,
            "patch_size": 14,
        },
    }


def _whisper(d_model: int, layers: int, heads: int, mel_bins: int = 80, vocab: int = 51865) -> dict:
    return {
        "d_model": d_model,
        "encoder_layers": layers,
        "encoder_attention_heads": heads,
        "encoder_ffn_dim": 4 * d_model,
        "decoder_layers": layers,
        "decoder_attention_heads": heads,
        "decoder_ffn_dim": 4 * d_model,
        "num_mel_bins": mel_bins,
        "vocab_size": vocab,
        "max_source_positions": 1500,
        "max_target_positions": 448,
    }


@dataclass(frozen=True)
class KnownConfig:
    model_type: str  # transformers' name of the architecture (AutoConfig.for_model's first argument)
    kwargs: dict  # its config.json values, as that config class's arguments


KNOWN_CONFIGS: dict[str, KnownConfig] = {
    "meta-llama/Llama-3.2-1B": KnownConfig("llama", _LLAMA_3_2_1B),
    "meta-llama/Llama-3.2-1B-Instruct": KnownConfig("llama", _LLAMA_3_2_1B),
    "meta-llama/Llama-2-7b-hf": KnownConfig("llama", _LLAMA_2_7B),
    "lmsys/vicuna-7b-v1.5": KnownConfig("llama", _LLAMA_2_7B),
    "EleutherAI/pythia-160m": KnownConfig("gpt_neox", _pythia(768, 12, 12)),
    "EleutherAI/pythia-410m": KnownConfig("gpt_neox", _pythia(1024, 24, 16)),
    "EleutherAI/pythia-1b": KnownConfig("gpt_neox", _pythia(2048, 16, 8)),
    "EleutherAI/pythia-1.4b": KnownConfig("gpt_neox", _pythia(2048, 24, 16)),
    "EleutherAI/pythia-2.8b": KnownConfig("gpt_neox", _pythia(2560, 32, 32)),
    "microsoft/phi-2": KnownConfig(
        "phi",
        {
            "hidden_size": 2560,
            "intermediate_size": 10240,
            "num_hidden_layers": 32,
            "num_attention_heads": 32,
            "num_key_value_heads": 32,
            "vocab_size": 51200,
            "partial_rotary_factor": 0.4,
            "max_position_embeddings": 2048,
            "tie_word_embeddings": False,
        },
    ),
    "facebook/chameleon-7b": KnownConfig("chameleon", _CHAMELEON_7B),
    "leloy/Anole-7b-v0.1-hf": KnownConfig("chameleon", _CHAMELEON_7B),
    "openai/clip-vit-large-patch14": KnownConfig("clip", _clip(224)),
    "openai/clip-vit-large-patch14-336": KnownConfig("clip", _clip(336)),
    "openai/whisper-tiny": KnownConfig("whisper", _whisper(384, 4, 6)),
    "openai/whisper-base": KnownConfig("whisper", _whisper(512, 6, 8)),
    "openai/whisper-small": KnownConfig("whisper", _whisper(768, 12, 12)),
    "openai/whisper-medium": KnownConfig("whisper", _whisper(1024, 24, 16)),
    "openai/whisper-large-v3": KnownConfig("whisper", _whisper(1280, 32, 20, mel_bins=128, vocab=51866)),
}

ENCODER_ARCHS = ("clip_vision", "clip_text", "whisper_encoder")  # fc1/fc2 MLPs, out_proj, biases
# Chameleon's VQ-GAN turns a 512 px image into 32 x 32 codes; the prompt holds them between two markers. Its
# encoder (29,423,616 parameters with the 7B models' vq_config, counted on transformers' class) is frozen.
CHAMELEON_IMAGE_TOKENS = 32 * 32 + 2
CHAMELEON_VQ_PARAMS = 29_423_616
# The embedded benchmarks' word vocabularies (built from the data) hold a few hundred tokens at most.
TINY_VOCAB = 512
WHISPER_POSITIONS_PER_S = 50.0  # 16 kHz log-mel at a hop of 160, halved by the encoder's stride-2 convolution


@dataclass(frozen=True)
class Linear:
    """One linear layer of every transformer block, named as the architecture names it (LoRA's targets)."""

    name: str
    in_features: int
    out_features: int


@dataclass(frozen=True)
class Shape:
    """One transformer: an LLM (``vocab`` > 0) or an encoder (``tokens``: its output positions per input)."""

    arch: str  # transformers model_type of the part that runs (llama, gpt_neox, phi, chameleon, clip_vision, ...)
    layers: int
    hidden: int
    intermediate: int
    heads: int
    kv_heads: int
    vocab: int  # 0 for an encoder
    params: int  # parameters loaded (for an encoder: the whole checkpoint, e.g. CLIP's text tower too)
    active_params: int  # parameters in the matrix products one position goes through (the FLOPs' N)
    head_dim: int = 0  # 0: hidden / heads
    gated_mlp: bool = True  # three MLP projections (SwiGLU) instead of two
    tied_embeddings: bool = False
    tokens: int = 0  # encoders: positions per input (CLIP ViT-L/14: 257 at 224 px, 577 at 336; Whisper: 1500)

    @property
    def head_width(self) -> int:
        return self.head_dim or self.hidden // self.heads

    @property
    def attention_width(self) -> int:
        return self.heads * self.head_width

    @property
    def kv_width(self) -> int:
        return self.kv_heads * self.head_width

    def linears(self) -> tuple[Linear, ...]:
        """Every linear layer of one block (what LoRA's ``target_modules`` name; ``all-linear`` takes them all)."""
        h, q, kv, i = self.hidden, self.attention_width, self.kv_width, self.intermediate
        if self.arch == "gpt_neox":
            return (Linear("query_key_value", h, 3 * q), Linear("dense", q, h), *_mlp(h, i, "dense_h_to_4h", ""))
        attention = (Linear("q_proj", h, q), Linear("k_proj", h, kv), Linear("v_proj", h, kv))
        if self.arch == "phi":
            return (*attention, Linear("dense", q, h), *_mlp(h, i, "fc1", ""))
        if self.arch in ENCODER_ARCHS:
            return (*attention, Linear("out_proj", q, h), *_mlp(h, i, "fc1", ""))
        return (*attention, Linear("o_proj", q, h), *_mlp(h, i, "up_proj", "gate_proj"))


def _mlp(hidden: int, intermediate: int, up: str, gate: str) -> tuple[Linear, ...]:
    gated = (Linear(gate, hidden, intermediate),) if gate else ()
    down = "down_proj" if gate else {"dense_h_to_4h": "dense_4h_to_h", "fc1": "fc2"}[up]
    return (*gated, Linear(up, hidden, intermediate), Linear(down, intermediate, hidden))


def _block_weights(shape: Shape) -> tuple[int, int]:
    """(weights, biases) of one block's linear layers."""
    linears = shape.linears()
    weights = sum(linear.in_features * linear.out_features for linear in linears)
    return weights, sum(linear.out_features for linear in linears)


def _llm_shape(model_type: str, c: dict) -> Shape:
    """An LLM's shape from its config values (the keys its transformers config class names them by)."""
    heads = c["num_attention_heads"]
    shape = Shape(
        arch=model_type,
        layers=c["num_hidden_layers"],
        hidden=c["hidden_size"],
        intermediate=c["intermediate_size"],
        heads=heads,
        kv_heads=c.get("num_key_value_heads") or heads,
        vocab=c["vocab_size"],
        params=0,
        active_params=0,
        head_dim=c.get("head_dim") or 0,
        gated_mlp=model_type not in ("gpt_neox", "phi"),
        tied_embeddings=bool(c.get("tie_word_embeddings", False)),
    )
    h, v = shape.hidden, shape.vocab
    weights, biases = _block_weights(shape)
    if model_type == "gpt_neox":  # biases everywhere, two LayerNorms (weight and bias) per block
        block, final = weights + biases + 4 * h, 2 * h
    elif model_type == "phi":  # biases everywhere, one LayerNorm per block, a biased LM head
        block, final = weights + biases + 2 * h, 2 * h + v
    else:  # Llama-like: no biases, two RMSNorms; Chameleon adds a LayerNorm per head on queries and keys
        qk_norm = 2 * (shape.attention_width + shape.kv_width) if c.get("qk_layernorm") else 0
        block, final = weights + 2 * h + qk_norm, h
    embeddings = v * h * (1 if shape.tied_embeddings else 2)
    params = embeddings + shape.layers * block + final
    # the input embedding is a lookup, not a product; tied, the same matrix is the LM head's
    active = params - (0 if shape.tied_embeddings else v * h)
    return replace(shape, params=params, active_params=active)


def _encoder_block(hidden: int, intermediate: int, heads: int, arch: str) -> tuple[Shape, int]:
    """A CLIP/Whisper encoder block's shape (counts unset) and its parameters (Whisper's k_proj has no bias)."""
    shape = Shape(arch, 1, hidden, intermediate, heads, heads, 0, 0, 0, gated_mlp=False)
    weights, biases = _block_weights(shape)
    return shape, weights + biases - (hidden if arch == "whisper_encoder" else 0) + 4 * hidden


def _clip_shape(c: dict) -> Shape:
    """CLIP's vision tower, which encodes; its parameters are the whole checkpoint's (AutoModel loads both towers)."""
    vision, text = c["vision_config"], c.get("text_config")
    h, patch, size = vision["hidden_size"], vision["patch_size"], vision["image_size"]
    tokens = (size // patch) ** 2 + 1  # one per patch, plus the class token
    block, block_params = _encoder_block(h, vision["intermediate_size"], vision["num_attention_heads"], "clip_vision")
    layers = vision["num_hidden_layers"]
    tower = 3 * patch * patch * h + h + tokens * h + 4 * h + layers * block_params  # patches, class, positions, 2 LNs
    params = tower
    if text is not None:
        th = text["hidden_size"]
        _, text_block = _encoder_block(th, text["intermediate_size"], text["num_attention_heads"], "clip_text")
        text_tower = (text["vocab_size"] + text["max_position_embeddings"]) * th + text[
            "num_hidden_layers"
        ] * text_block
        projection = c.get("projection_dim", 512)
        params += text_tower + 2 * th + (h + th) * projection + 1  # final LN, both projections, logit scale
    active = 3 * patch * patch * h + layers * (block_params - 4 * h)
    return replace(block, layers=layers, params=params, active_params=active, tokens=tokens)


def _whisper_shape(c: dict) -> Shape:
    """Whisper's encoder, which encodes; its parameters are the whole model's (AutoModel loads the decoder too)."""
    d, ffn, heads = c["d_model"], c["encoder_ffn_dim"], c["encoder_attention_heads"]
    mel, frames = c.get("num_mel_bins", 80), c.get("max_source_positions", 1500)
    block, block_params = _encoder_block(d, ffn, heads, "whisper_encoder")
    layers = c["encoder_layers"]
    convs = 3 * mel * d + d + 3 * d * d + d
    encoder = convs + frames * d + layers * block_params + 2 * d
    attention, dec_ffn = 4 * d * d + 3 * d, c["decoder_ffn_dim"]
    dec_block = 2 * attention + 2 * d * dec_ffn + dec_ffn + d + 6 * d  # self- and cross-attention, MLP, 3 LayerNorms
    decoder = (c["vocab_size"] + c.get("max_target_positions", 448)) * d + c["decoder_layers"] * dec_block + 2 * d
    active = convs + layers * (block_params - 4 * d)
    return replace(block, layers=layers, params=encoder + decoder, active_params=active, tokens=frames)


def shape_from_config(model_type: str, values: dict) -> Shape:
    """The shape of a part from its config values (a config.json, or ``to_dict()`` of a transformers config)."""
    if model_type in ("llama", "mistral", "chameleon", "gpt_neox", "phi"):
        return _llm_shape(model_type, values)
    if model_type == "clip":
        return _clip_shape(values)
    if model_type == "clip_vision_model":
        return _clip_shape({"vision_config": values})
    if model_type == "whisper":
        return _whisper_shape(values)
    raise ValueError(
        f"no shape reader for model_type '{model_type}' (known: llama, mistral, chameleon, gpt_neox, phi, "
        "clip, clip_vision_model, whisper); add one to mmcl.models.shapes"
    )


def config_kwargs(hub_id: str) -> KnownConfig:
    """A known hub id's architecture as transformers config arguments, e.g.
    ``LlamaConfig(**config_kwargs("meta-llama/Llama-3.2-1B").kwargs)``; KeyError for other ids."""
    known = KNOWN_CONFIGS[hub_id]
    return KnownConfig(known.model_type, copy.deepcopy(known.kwargs))


def _local_config(model_id: str) -> tuple[str, dict] | None:
    """(model_type, values) of a local directory's config.json or of the Hugging Face cache's copy; None
    when there is neither. transformers (which imports torch) is imported only when there is one."""
    local = Path(model_id) / "config.json"
    if not local.is_file():
        from huggingface_hub import try_to_load_from_cache

        try:
            cached = try_to_load_from_cache(model_id, "config.json")
        except ValueError:  # not a repository id (e.g. a path that does not exist)
            return None
        if not isinstance(cached, str):
            return None
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(model_id, local_files_only=True)
    return config.model_type, config.to_dict()


def hub_shape(model_id: str, where: str) -> Shape:
    """The shape of the part ``model_id`` names (a hub id or a local path); ``where`` names its setting."""
    try:
        found = _local_config(model_id)
    except (OSError, ValueError) as err:
        raise ConfigError(f"{where}: cannot read the config.json of '{model_id}': {err}") from err
    if found is None:
        if model_id not in KNOWN_CONFIGS:
            raise ConfigError(
                f"{where}: no architecture shape for '{model_id}': it is not a local directory with a config.json, "
                "not in the Hugging Face cache, and not a known hub id; download its config.json "
                f"(`huggingface-cli download {model_id} config.json`) or give the local path of a copy"
            )
        known = KNOWN_CONFIGS[model_id]
        found = (known.model_type, known.kwargs)
    try:
        return shape_from_config(*found)
    except (KeyError, ValueError) as err:
        raise ConfigError(f"{where}: '{model_id}': {err}") from err


@dataclass(frozen=True)
class BackboneShape:
    """A backbone's parts as the cost model sees them."""

    llm: Shape
    encoders: dict[str, Shape] = field(default_factory=dict)  # image, audio (video frames use the image encoder)
    projectors: dict[str, int] = field(default_factory=dict)  # modality -> parameters of its 2-layer MLP projector
    projector_width: int = 0  # the projectors' hidden width
    media_tokens: dict[str, int] = field(default_factory=dict)  # modality -> LLM positions one input occupies
    encoder_inputs: dict[str, int] = field(default_factory=dict)  # modality -> encoder forwards per input (frames)
    frozen_encoders: bool = True
    cached_media: bool = False  # the encoders' outputs come from the feature cache (mmcl.engine.features)
    image_tokenizer_params: int = 0  # a frozen image tokenizer inside the model (Chameleon's VQ-GAN encoder)
    audio_positions_per_s: float = WHISPER_POSITIONS_PER_S  # of the audio encoder's window (its output's rate)

    def encoder_of(self, modality: str) -> Shape | None:
        return self.encoders.get("image" if modality == "video" else modality)


def _tiny_llm(config: TinyLLMConfig, vocab: int) -> Shape:
    values = {
        "hidden_size": config.hidden_size,
        "intermediate_size": config.intermediate_size,
        "num_hidden_layers": config.layers,
        "num_attention_heads": config.heads,
        "vocab_size": vocab,
        "tie_word_embeddings": True,
    }
    return shape_from_config(config.arch, values)


def _multimodal(
    config: BackboneConfig, llm: Shape, encoders: dict[str, Shape], audio_rate: float = WHISPER_POSITIONS_PER_S
) -> BackboneShape:
    """The LLaVA-style assembly: a projector per modality (video has its own), media tokens per input."""
    frames = config.video.frames
    modalities = [*encoders] + (["video"] if "image" in encoders else [])
    projectors, tokens, inputs = {}, {}, {}
    width = config.projector_hidden or llm.hidden
    for modality in modalities:
        encoder = encoders["image" if modality == "video" else modality]
        projectors[modality] = encoder.hidden * width + width + width * llm.hidden + llm.hidden
        concat = modality == "video" and config.video.temporal == "concat"
        tokens[modality] = encoder.tokens * (frames if concat else 1)
        inputs[modality] = frames if modality == "video" else 1
    shape = BackboneShape(llm, encoders, projectors, width, tokens, inputs, config.freeze_encoders)
    return replace(shape, audio_positions_per_s=audio_rate)


def backbone_shape(name: str, config: BackboneConfig, suite: SuiteConfig, path: str) -> BackboneShape:
    """The shape of backbone ``name`` (``backbones.<name>`` of the params file ``path``) on ``suite``."""
    where = f"{path}: backbones.{name}"
    if isinstance(config, HFConfig):
        encoders = {}
        if config.image_encoder:
            encoders["image"] = hub_shape(config.image_encoder, f"{where}.image_encoder")
        if config.audio_encoder:
            encoders["audio"] = hub_shape(config.audio_encoder, f"{where}.audio_encoder")
        return _multimodal(config, hub_shape(config.llm, f"{where}.llm"), encoders)
    if isinstance(config, TinyConfig):
        world, image, audio = suite.world, config.image_encoder, config.audio_encoder
        vision = {"hidden_size": image.hidden_size, "intermediate_size": 2 * image.hidden_size}
        vision |= {"num_hidden_layers": image.layers, "num_attention_heads": image.heads}
        vision |= {"image_size": world.image_size, "patch_size": image.patch_size}
        seconds = math.ceil(world.audio_seconds)  # Whisper features cover whole seconds
        whisper = {"d_model": audio.d_model, "encoder_layers": audio.layers, "encoder_attention_heads": audio.heads}
        whisper |= {"encoder_ffn_dim": 2 * audio.d_model, "num_mel_bins": audio.mel_bins}
        whisper |= {"max_source_positions": seconds * world.sample_rate // audio.hop_length // 2}
        whisper |= {"decoder_layers": 1, "decoder_ffn_dim": 8, "vocab_size": 4, "max_target_positions": 4}
        encoders = {"image": _clip_shape({"vision_config": vision}), "audio": _whisper_shape(whisper)}
        rate = world.sample_rate / audio.hop_length / 2  # positions per second: hop, then a stride-2 convolution
        return _multimodal(config, _tiny_llm(config.llm, TINY_VOCAB), encoders, rate)
    if isinstance(config, UnifiedConfig):
        if config.model is not None:  # images are vocabulary tokens, made by the checkpoint's own VQ-GAN
            llm = hub_shape(config.model, f"{where}.model")
            tokens = {"image": CHAMELEON_IMAGE_TOKENS}
            return BackboneShape(llm, media_tokens=tokens, image_tokenizer_params=CHAMELEON_VQ_PARAMS)
        tokenizer = config.tokenizer
        side = suite.world.image_size // 2**tokenizer.downsample  # codes per row of an image
        llm = _tiny_llm(config.llm, TINY_VOCAB + tokenizer.codebook_size + 2)
        return BackboneShape(llm, media_tokens={"image": side * side + 2})
    raise ConfigError(
        f"{where}: family '{config.family}' has no shape for cost estimates; estimates know the hf, tiny and "
        "unified families (add the family's parts to mmcl.models.shapes.backbone_shape)"
    )
