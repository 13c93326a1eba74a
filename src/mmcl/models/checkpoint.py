"""Saving and loading models: the stage-0 base directory and the per-stage delta checkpoints.

A *base* directory is self-contained and loaded through ``from_pretrained`` exactly like a hub
model, whatever the backbone family::

    backbone.json            its architecture (the model class that reads it), video handling, projector width
    llm/ tokenizer/          save_pretrained of the causal LM and its tokenizer
    image_encoder/ audio_encoder/   a ``MultimodalLM``'s: save_pretrained of each encoder and its processor
    projectors.safetensors   a ``MultimodalLM``'s projectors, initial (or stage-0) weights
    image_tokenizer/         a ``UnifiedLM``'s (``mmcl.models.unified_lm``) instead of encoders and projectors

Each architecture writes and reads its own parts (``save_parts``, ``load``); the manifest's
``architecture`` says which one a directory holds.

A *stage* checkpoint holds only what differs from the base: every parameter a stage trained or
inherited from the previous stage, as safetensors (no pickle), plus the method's own tensors and a
``meta.json``. Both kinds are sealed (``mmcl.core.integrity``): a corrupt or swapped file is detected when
loaded, moved aside and recomputed by the workflow, never used.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from mmcl.core.integrity import CheckpointError, seal, verify
from mmcl.core.io import atomic_path
from mmcl.core.paths import STAGE_META as META
from mmcl.models.mllm import MultimodalLM
from mmcl.models.unified_lm import UnifiedLM

MANIFEST = "backbone.json"
WEIGHTS = "model.safetensors"
METHOD_STATE = "method_state.safetensors"
ARCHITECTURES = {cls.architecture: cls for cls in (MultimodalLM, UnifiedLM)}


def architecture_of(manifest: dict) -> type:
    """The model class of a base directory. Manifests written before the key existed name none: theirs is
    ``unified`` when they hold its parts, else ``multimodal``."""
    return ARCHITECTURES[manifest.get("architecture") or ("unified" if "unified" in manifest else "multimodal")]


def save_base(out_dir: Path, model, processor, manifest: dict) -> None:
    with atomic_path(out_dir) as tmp:
        tmp.mkdir()
        model.llm.save_pretrained(tmp / "llm")
        model.tokenizer.save_pretrained(tmp / "tokenizer")
        manifest = {"architecture": model.architecture, **manifest, **model.save_parts(tmp, processor)}
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        seal(tmp)


def load_base(base_dir: Path, dtype: torch.dtype | None = None, attn_implementation: str | None = None):
    """The model of a base directory and its media processor (its seal verified first); ``attn_implementation``:
    the LLM's attention kernel (None: transformers' default)."""
    from transformers import AutoTokenizer

    base_dir = Path(base_dir)
    if not (base_dir / MANIFEST).exists():
        raise CheckpointError(
            f"{base_dir}: not a base model directory (no {MANIFEST}); build it with `mmcl train-base`"
        )
    verify(base_dir)
    manifest = json.loads((base_dir / MANIFEST).read_text())
    tokenizer = AutoTokenizer.from_pretrained(base_dir / "tokenizer")
    return architecture_of(manifest).load(base_dir, manifest, tokenizer, dtype, attn_implementation)


def save_stage(
    out_dir: Path, model: torch.nn.Module | dict[str, torch.Tensor], keys: set[str], method_state: dict, meta: dict
) -> None:
    """Write the stage's delta weights, the method's tensors and a meta file with their hashes. ``model``:
    the model, or its whole state dict (as ``accelerator.get_state_dict`` gathers it from FSDP's shards)."""
    whole = model.state_dict() if isinstance(model, torch.nn.Module) else model
    state = {k: v.detach().contiguous().cpu() for k, v in whole.items() if k in keys}
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


class StageSwap:
    """Stage checkpoints of one method loaded in turn onto one loaded start model: before each, the tensors
    the previous one replaced get their start values back, so each checkpoint is evaluated exactly as if
    loaded onto a fresh start model, which is loaded once.

    With ``method``, a checkpoint's deltas are merged into the weights after it is loaded, where the method
    allows it (``CLMethod.merged_weights``), and taken out before the next: the weights they changed get
    their start values back too, so rounding in the merge never reaches another checkpoint."""

    def __init__(self, model: torch.nn.Module, method=None):
        self.model = model
        self.method = method
        self.start: dict[str, torch.Tensor] = {}  # the start values of the tensors checkpoints replaced
        self.merged = False

    @torch.no_grad()
    def load(self, ckpt_dir: Path | None) -> bool:
        """Put ``ckpt_dir`` onto the start model (None: the start model itself); True when its deltas were
        merged into the weights."""
        if self.merged:
            self.method.merge(self.model, False)
            self.merged = False
        state = self.model.state_dict()
        for key, value in self.start.items():
            state[key].copy_(value)
        if ckpt_dir is None:
            return False
        merged = self.method.merged_weights(self.model) if self.method is not None else []
        keys = [*safe_open(Path(ckpt_dir) / WEIGHTS, framework="pt").keys(), *merged]
        self.start |= {key: state[key].detach().clone() for key in keys if key in state and key not in self.start}
        load_stage(ckpt_dir, self.model)
        if merged:
            self.method.merge(self.model, True)
            self.merged = True
        return self.merged
