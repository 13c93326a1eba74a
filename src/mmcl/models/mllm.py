"""A LLaVA-style multimodal LLM assembled from Hugging Face parts.

Each modality has a frozen-by-default encoder and a trainable two-layer MLP projector into the
LLM's embedding space. The prompt holds one placeholder token per media token (expanded by the
collator); the projected encoder outputs replace those placeholders' embeddings, so the LLM sees
``[bos] <media tokens> instruction <answer> target [eos]`` as one sequence. Video frames go
through the image encoder and are concatenated (or averaged) over time.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from mmcl.data.media import MediaProcessor
from mmcl.data.vocab import IGNORE, MEDIA_TOKENS

PROJECTORS = "projectors.safetensors"


def encoder_width(config) -> int:
    for sub in ("vision_config", "audio_config"):
        if hasattr(config, sub):
            config = getattr(config, sub)
    return getattr(config, "hidden_size", None) or config.d_model


class ImageEncoder(nn.Module):
    """A vision tower (CLIP-like) returning one token per patch plus the class token."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.tower = getattr(model, "vision_model", model)  # dual-tower checkpoints: keep the vision side
        self.width = encoder_width(model.config)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.tower(pixel_values=pixel_values).last_hidden_state


class AudioEncoder(nn.Module):
    """An audio encoder fed by its feature extractor's output (log-mel for Whisper-like models)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.tower = model.get_encoder() if hasattr(model, "get_encoder") else model
        self.width = encoder_width(model.config)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.tower(features).last_hidden_state


def greedy(llm, tokenizer, max_new_tokens: int, **inputs) -> torch.Tensor:
    """``llm.generate`` with greedy decoding, padding with the tokenizer's pad token; ``inputs``: the
    prompt (``input_ids`` or ``inputs_embeds``), ``attention_mask`` and any other argument of ``generate``."""
    return llm.generate(
        max_new_tokens=max_new_tokens, do_sample=False, num_beams=1, pad_token_id=tokenizer.pad_token_id, **inputs
    )


@dataclass
class SupervisedOutputs:
    """A forward with labels: the LM head ran only at ``rows``, the positions whose next token is supervised."""

    loss: torch.Tensor  # mean cross-entropy over those tokens
    logits: torch.Tensor  # (rows, vocab), in row-major order of ``rows``
    targets: torch.Tensor  # (rows,): the token each row predicts
    rows: torch.Tensor  # (batch, length) bool


def supervised_rows(labels: torch.Tensor) -> torch.Tensor:
    """(batch, length) mask of the positions whose logits predict a supervised token (position t predicts t+1)."""
    rows = torch.zeros_like(labels, dtype=torch.bool)
    rows[:, :-1] = labels[:, 1:] != IGNORE
    return rows


def supervised_forward(llm, labels: torch.Tensor, **inputs) -> SupervisedOutputs:
    """The causal LM's decoder on ``inputs``, then its LM head and the loss at the supervised rows only.

    Prompt and media positions are most of a multimodal sequence and need no logits: skipping them cuts
    the LM head's FLOPs and the (positions, vocabulary) logits' memory by the prompt's share.
    """
    causal = llm.get_base_model() if hasattr(llm, "get_base_model") else llm  # under a peft wrapper
    hidden = causal.base_model(use_cache=False, **inputs).last_hidden_state
    rows = supervised_rows(labels)
    logits = causal.get_output_embeddings()(hidden[rows])
    targets = labels[:, 1:][rows[:, :-1]]
    return SupervisedOutputs(F.cross_entropy(logits.float(), targets), logits, targets, rows)


def enable_gradient_checkpointing(llm) -> None:
    """Recompute each decoder layer's activations in backward instead of keeping them (peft's wrapper too).
    Non-reentrant, so that it works when the inputs need no gradient (frozen embeddings, LoRA)."""
    causal = llm.get_base_model() if hasattr(llm, "get_base_model") else llm
    causal.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})


def projector(in_dim: int, hidden: int, out_dim: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(in_dim, hidden), nn.GELU(), nn.Linear(hidden, out_dim))


class MultimodalLM(nn.Module):
    architecture = "multimodal"  # its name in a base directory's manifest (``mmcl.models.checkpoint``)
    encoder_parts = ("image_encoder/", "audio_encoder/")  # the base directory's files its cached features depend on

    def __init__(
        self,
        llm: nn.Module,
        tokenizer,
        image_encoder: ImageEncoder | None,
        audio_encoder: AudioEncoder | None,
        projector_hidden: int | None = None,
        video_temporal: str = "concat",
        freeze_encoders: bool = True,
    ):
        super().__init__()
        self.llm = llm
        self.tokenizer = tokenizer
        self.encoders = nn.ModuleDict()
        if image_encoder is not None:
            self.encoders["image"] = image_encoder
        if audio_encoder is not None:
            self.encoders["audio"] = audio_encoder
        self.video_temporal = video_temporal
        self.freeze_encoders = freeze_encoders
        width = llm.get_input_embeddings().embedding_dim
        self.projectors = nn.ModuleDict(
            {
                modality: projector(self._encoder(modality).width, projector_hidden or width, width)
                for modality in self.modalities
            }
        )
        self.media_token_ids = {m: tokenizer.convert_tokens_to_ids(MEDIA_TOKENS[m]) for m in self.modalities}
        if freeze_encoders:
            self.encoders.requires_grad_(False)
        self.num_media_tokens: dict[str, int] = {}
        self.cached: frozenset[str] = frozenset()  # modalities whose media arrive as cached encoder outputs

    @property
    def modalities(self) -> list[str]:
        found = list(self.encoders)
        return found + (["video"] if "image" in self.encoders else [])

    def _encoder(self, modality: str) -> nn.Module:
        return self.encoders["image" if modality == "video" else modality]

    def train(self, mode: bool = True):
        super().train(mode)
        if self.freeze_encoders:
            self.encoders.eval()  # frozen encoders keep dropout/norm statistics fixed
        return self

    def features(self, modality: str, inputs: torch.Tensor) -> torch.Tensor:
        """Media inputs -> the encoder's output, (batch, media tokens, encoder width): what the feature cache
        (``mmcl.engine.features``) stores, video frames already reduced over time."""
        encoder = self._encoder(modality)
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.freeze_encoders):
            if modality == "video":  # (B, F, C, H, W): every frame through the image encoder
                b, f = inputs.shape[:2]
                feats = encoder(inputs.flatten(0, 1))
                feats = feats.view(b, f, *feats.shape[1:])
                return feats.mean(1) if self.video_temporal == "mean" else feats.flatten(1, 2)
            return encoder(inputs)

    def encode(self, modality: str, inputs: torch.Tensor) -> torch.Tensor:
        """Media inputs (or, for a modality in ``cached``, the encoder's cached output) -> (batch, media
        tokens, LLM width)."""
        if modality in self.cached:
            if not self.freeze_encoders:
                raise ValueError(f"{modality}: cached encoder outputs cannot train the encoder; decode the media")
            feats = inputs
        else:
            feats = self.features(modality, inputs)
        projector_module = self.projectors[modality]
        return projector_module(feats.to(projector_module[0].weight.dtype))

    def embed(self, input_ids: torch.Tensor, media: dict[str, torch.Tensor]) -> torch.Tensor:
        """Token embeddings with every modality's placeholders replaced by its projected features: each
        sequence's first n, for its n placeholders (fewer than the encoder's positions for audio shorter
        than the encoder's window, ``mmcl.engine.batching``)."""
        embeds = self.llm.get_input_embeddings()(input_ids)
        for modality, inputs in media.items():
            feats = self.encode(modality, inputs).to(embeds.dtype)
            mask = input_ids == self.media_token_ids[modality]
            counts = mask.sum(1)
            counts = counts[counts > 0]  # the sequences with this modality's media, in batch order
            longest = int(counts.max()) if len(counts) else 0
            if len(counts) != feats.shape[0] or longest > feats.shape[1]:
                raise ValueError(
                    f"{modality}: {len(counts)} sequences with up to {longest} placeholder "
                    f"tokens but {feats.shape[0]} media inputs of {feats.shape[1]} tokens; the collator and the "
                    "encoder disagree on the number of media tokens"
                )
            used = torch.arange(feats.shape[1], device=feats.device) < counts[:, None]
            embeds = embeds.masked_scatter(mask.unsqueeze(-1), feats[used])
        return embeds

    def forward(self, input_ids, attention_mask, media=None, labels=None, **kwargs):
        """With ``labels``: ``SupervisedOutputs``; without: the LLM's outputs (logits at every position)."""
        embeds = self.embed(input_ids, media or {})
        if labels is not None:
            return supervised_forward(self.llm, labels, inputs_embeds=embeds, attention_mask=attention_mask, **kwargs)
        return self.llm(inputs_embeds=embeds, attention_mask=attention_mask, **kwargs)

    def media_encoders(self, processor: MediaProcessor) -> list[nn.Module]:
        """What ``encode_files`` runs: the encoders (not the LLM)."""
        return [self.encoders]

    @torch.no_grad()
    def encode_files(self, processor: MediaProcessor, modality: str, files: list[Path]) -> torch.Tensor:
        """What the feature cache keeps for these media files: the frozen encoder's output."""
        parameter = next(self._encoder(modality).parameters())
        inputs = torch.stack([processor.load(modality, file) for file in files])
        return self.features(modality, inputs.to(parameter.device, parameter.dtype))

    @torch.no_grad()
    def count_media_tokens(self, processor: MediaProcessor) -> None:
        """How many LLM positions each modality occupies, found by encoding one blank input."""
        from PIL import Image

        dtype = next(self.projectors.parameters()).dtype
        blank = {}
        if processor.image_processor is not None:
            size = getattr(self.encoders["image"].tower.config, "image_size", 224)
            image = processor.image_processor([Image.new("RGB", (size, size))], return_tensors="pt")["pixel_values"]
            blank["image"] = image
            blank["video"] = image.unsqueeze(1).repeat(1, processor.video_frames, 1, 1, 1)
        if processor.feature_extractor is not None:
            fe = processor.feature_extractor
            wave = np.zeros(int(fe.sampling_rate * getattr(fe, "chunk_length", 1)), dtype=np.float32)
            blank["audio"] = next(iter(fe(wave, sampling_rate=fe.sampling_rate, return_tensors="pt").values()))
        for modality, inputs in blank.items():
            self.num_media_tokens[modality] = self.encode(modality, inputs.to(dtype)).shape[1]

    # --- its parts of a base directory, beside the LLM and tokenizer (``mmcl.models.checkpoint``) ---

    def save_parts(self, directory: Path, processor: MediaProcessor) -> dict:
        """Write each encoder with its processor (``image_encoder/``, ``audio_encoder/``) and the projectors;
        returns the manifest entries that loading them needs."""
        if "image" in self.encoders:
            self.encoders["image"].model.save_pretrained(directory / "image_encoder")
            processor.image_processor.save_pretrained(directory / "image_encoder")
        if "audio" in self.encoders:
            self.encoders["audio"].model.save_pretrained(directory / "audio_encoder")
            processor.feature_extractor.save_pretrained(directory / "audio_encoder")
        save_file({k: v.contiguous() for k, v in self.projectors.state_dict().items()}, directory / PROJECTORS)
        return {}

    @classmethod
    def load(
        cls, directory: Path, manifest: dict, tokenizer, dtype=None, attn_implementation: str | None = None
    ) -> tuple[MultimodalLM, MediaProcessor]:
        """The model of a base directory (its ``llm/`` and what ``save_parts`` wrote), with its media processor."""
        from transformers import AutoFeatureExtractor, AutoImageProcessor, AutoModel, AutoModelForCausalLM

        kwargs = {"dtype": dtype} if dtype is not None else {}
        attention = {"attn_implementation": attn_implementation} if attn_implementation else {}
        llm = AutoModelForCausalLM.from_pretrained(directory / "llm", **kwargs, **attention)
        image_encoder = audio_encoder = image_processor = feature_extractor = None
        if (directory / "image_encoder").exists():
            image_encoder = ImageEncoder(AutoModel.from_pretrained(directory / "image_encoder", **kwargs))
            image_processor = AutoImageProcessor.from_pretrained(directory / "image_encoder")
        if (directory / "audio_encoder").exists():
            audio_encoder = AudioEncoder(AutoModel.from_pretrained(directory / "audio_encoder", **kwargs))
            feature_extractor = AutoFeatureExtractor.from_pretrained(directory / "audio_encoder")
        model = cls(
            llm,
            tokenizer,
            image_encoder,
            audio_encoder,
            projector_hidden=manifest.get("projector_hidden"),
            video_temporal=manifest["video"]["temporal"],
            freeze_encoders=manifest.get("freeze_encoders", True),
        )
        model.projectors.load_state_dict(load_file(directory / PROJECTORS))
        if dtype is not None:
            model.projectors.to(dtype)
        processor = MediaProcessor(image_processor, feature_extractor, manifest["video"]["frames"])
        model.count_media_tokens(processor)
        return model, processor

    @torch.no_grad()
    def generate(self, input_ids, attention_mask, media=None, max_new_tokens: int = 24) -> torch.Tensor:
        """Greedy decoding; returns only the new tokens (inputs must be left-padded)."""
        embeds = self.embed(input_ids, media or {})
        eos = self.tokenizer.eos_token_id
        return greedy(
            self.llm,
            self.tokenizer,
            max_new_tokens,
            inputs_embeds=embeds,
            attention_mask=attention_mask,
            eos_token_id=eos,
        )
