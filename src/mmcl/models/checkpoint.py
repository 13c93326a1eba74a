"""Saving and loading models: the stage-0 base directory and the per-stage delta checkpoints.

A *base* directory is self-contained and loaded through ``from_pretrained`` exactly like a hub
model, whatever the backbone family::

    backbone.json            which parts exist, video handling, projector width
    llm/ tokenizer/          save_pretrained of the causal LM and its tokenizer
    image_encoder/ audio_encoder/   save_pretrained of each encoder and its processor
    projectors.safetensors   the projectors' initial (or stage-0) weights
    image_tokenizer/         a unified model's (``mmcl.models.unified_lm``) instead of encoders and projectors

A *stage* checkpoint holds only what differs from the base: every parameter a stage trained or
inherited from the previous stage, as safetensors (no pickle), plus the method's own tensors and a
``meta.json``. Both kinds are sealed (``mmcl.integrity``): a corrupt or swapped file is detected when
loaded, moved aside and recomputed by the workflow, never used.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from mmcl.integrity import problems, quarantine, seal
from mmcl.io import atomic_path
from mmcl.models.mllm import AudioEncoder, ImageEncoder, MultimodalLM

MANIFEST = "backbone.json"
WEIGHTS = "model.safetensors"
METHOD_STATE = "method_state.safetensors"
META = "meta.json"


class CheckpointError(RuntimeError):
    """A checkpoint is missing, corrupt or does not fit the model; the message says how to recover."""


@dataclass
class MediaProcessor:
    """Turns media files into encoder inputs, with the processors saved beside each encoder."""

    image_processor: object | None
    feature_extractor: object | None
    video_frames: int

    def load(self, modality: str, path: Path) -> torch.Tensor:
        """Encoder input of one media file; a file that cannot be decoded raises DataError naming it."""
        from mmcl.data.media import read_audio, read_frames, read_image

        if modality == "image":
            return self.image_processor([read_image(path)], return_tensors="pt")["pixel_values"][0]
        if modality == "video":
            return self.image_processor(read_frames(path, self.video_frames), return_tensors="pt")["pixel_values"]
        if modality == "audio":
            rate = self.feature_extractor.sampling_rate  # real recordings come at 44.1 or 48 kHz: resampled
            features = self.feature_extractor(read_audio(path, rate), sampling_rate=rate, return_tensors="pt")
            return next(iter(features.values()))[0]  # input_features (log-mel) or input_values (waveform)
        raise ValueError(f"no encoder input for modality '{modality}'")


def save_base(out_dir: Path, model: MultimodalLM, processor: MediaProcessor, manifest: dict) -> None:
    with atomic_path(out_dir) as tmp:
        tmp.mkdir()
        model.llm.save_pretrained(tmp / "llm")
        model.tokenizer.save_pretrained(tmp / "tokenizer")
        if not isinstance(model, MultimodalLM):
            from mmcl.models.unified_lm import save_parts

            manifest = {**manifest, "unified": save_parts(tmp, processor)}
        if "image" in model.encoders:
            model.encoders["image"].model.save_pretrained(tmp / "image_encoder")
            processor.image_processor.save_pretrained(tmp / "image_encoder")
        if "audio" in model.encoders:
            model.encoders["audio"].model.save_pretrained(tmp / "audio_encoder")
            processor.feature_extractor.save_pretrained(tmp / "audio_encoder")
        save_file(
            {k: v.contiguous() for k, v in model.projectors.state_dict().items()},
            tmp / "projectors.safetensors",
        )
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        seal(tmp)


def load_base(base_dir: Path, dtype: torch.dtype | None = None) -> tuple[MultimodalLM, MediaProcessor]:
    from transformers import (
        AutoFeatureExtractor,
        AutoImageProcessor,
        AutoModel,
        AutoModelForCausalLM,
        AutoTokenizer,
    )

    base_dir = Path(base_dir)
    if not (base_dir / MANIFEST).exists():
        raise CheckpointError(
            f"{base_dir}: not a base model directory (no {MANIFEST}); build it with `mmcl train-base`"
        )
    verify(base_dir)
    manifest = json.loads((base_dir / MANIFEST).read_text())
    kwargs = {"dtype": dtype} if dtype is not None else {}
    if "unified" in manifest:
        from mmcl.models.unified_lm import load_unified

        return load_unified(base_dir, manifest, **kwargs)
    tokenizer = AutoTokenizer.from_pretrained(base_dir / "tokenizer")
    llm = AutoModelForCausalLM.from_pretrained(base_dir / "llm", **kwargs)
    image_encoder = audio_encoder = None
    image_processor = feature_extractor = None
    if (base_dir / "image_encoder").exists():
        image_encoder = ImageEncoder(AutoModel.from_pretrained(base_dir / "image_encoder", **kwargs))
        image_processor = AutoImageProcessor.from_pretrained(base_dir / "image_encoder")
    if (base_dir / "audio_encoder").exists():
        audio_encoder = AudioEncoder(AutoModel.from_pretrained(base_dir / "audio_encoder", **kwargs))
        feature_extractor = AutoFeatureExtractor.from_pretrained(base_dir / "audio_encoder")
    model = MultimodalLM(
        llm,
        tokenizer,
        image_encoder,
        audio_encoder,
        projector_hidden=manifest.get("projector_hidden"),
        video_temporal=manifest["video"]["temporal"],
        freeze_encoders=manifest.get("freeze_encoders", True),
    )
    model.projectors.load_state_dict(load_file(base_dir / "projectors.safetensors"))
    if dtype is not None:
        model.projectors.to(dtype)
    processor = MediaProcessor(image_processor, feature_extractor, manifest["video"]["frames"])
    count_media_tokens(model, processor)
    return model, processor


@torch.no_grad()
def count_media_tokens(model: MultimodalLM, processor: MediaProcessor) -> None:
    """How many LLM positions each modality occupies, found by encoding one blank input."""
    from PIL import Image

    dtype = next(model.projectors.parameters()).dtype
    blank = {}
    if processor.image_processor is not None:
        size = getattr(model.encoders["image"].tower.config, "image_size", 224)
        image = processor.image_processor([Image.new("RGB", (size, size))], return_tensors="pt")["pixel_values"]
        blank["image"] = image
        blank["video"] = image.unsqueeze(1).repeat(1, processor.video_frames, 1, 1, 1)
    if processor.feature_extractor is not None:
        fe = processor.feature_extractor
        wave = np.zeros(int(fe.sampling_rate * getattr(fe, "chunk_length", 1)), dtype=np.float32)
        blank["audio"] = next(iter(fe(wave, sampling_rate=fe.sampling_rate, return_tensors="pt").values()))
    for modality, inputs in blank.items():
        model.num_media_tokens[modality] = model.encode(modality, inputs.to(dtype)).shape[1]


def save_stage(out_dir: Path, model: torch.nn.Module, keys: set[str], method_state: dict, meta: dict) -> None:
    """Write the stage's delta weights, the method's tensors and a meta file with their hashes."""
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items() if k in keys}
    with atomic_path(out_dir) as tmp:
        tmp.mkdir()
        save_file(state, tmp / WEIGHTS)
        save_file({k: v.contiguous().cpu() for k, v in method_state.items()}, tmp / METHOD_STATE)
        (tmp / META).write_text(json.dumps(meta, indent=2) + "\n")
        seal(tmp)


def load_stage(ckpt_dir: Path, model: torch.nn.Module) -> tuple[set[str], dict]:
    """Load a stage checkpoint into ``model``; return its keys and the method's tensors."""
    ckpt_dir = Path(ckpt_dir)
    verify(ckpt_dir)
    state = load_file(ckpt_dir / WEIGHTS)
    model_keys = set(model.state_dict())
    unknown = sorted(set(state) - model_keys)
    if unknown:
        raise CheckpointError(
            f"{ckpt_dir}: {len(unknown)} tensors do not exist in this model (e.g. {unknown[0]}); "
            "was it trained with another method or backbone?"
        )
    model.load_state_dict(state, strict=False)
    return set(state), load_file(ckpt_dir / METHOD_STATE)


def verify(directory: Path) -> None:
    """Refuse a checkpoint whose files do not match their seal, and move it aside so it is recomputed."""
    if found := problems(directory):
        aside = quarantine(directory)
        raise CheckpointError(
            f"{directory}: {'; '.join(found)}. Moved to {aside.name}; re-run the workflow to recompute it"
        )
