"""What the embedded image tokenizer (``vq``) and the generation judge (``judge``) share: a suite's images
as tensors, seeded construction, and the sealed artifact directory each is saved to (``settings.json``:
its settings, what it learnt and how well; ``model.safetensors``: its weights).

Both are trained once per suite by their own job (``mmcl train-tokenizer``, ``mmcl train-judge``:
``mmcl.jobs.image_artifacts``, on ``mmcl.engine.small_loop``), before any model that uses them, and are
frozen from then on.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from mmcl.core.integrity import CheckpointError, seal, verify
from mmcl.core.io import atomic_path
from mmcl.data.media import read_image
from mmcl.data.records import Sample

SETTINGS = "settings.json"
WEIGHTS = "model.safetensors"


def read_images(data_dir: Path, samples: list[Sample]) -> torch.Tensor:
    """The first media file of each sample as uint8 pixels (N, 3, H, W)."""
    pixels = [np.asarray(read_image(Path(data_dir) / sample.media[0])) for sample in samples]
    return torch.from_numpy(np.stack(pixels)).permute(0, 3, 1, 2).contiguous()


def as_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 pixels -> floats in [0, 1]."""
    return images.float() / 255


def as_pil(images: torch.Tensor) -> list:
    """Floats in [0, 1] (N, 3, H, W) -> RGB PIL images."""
    from PIL import Image

    pixels = (images.clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).cpu().numpy()
    return [Image.fromarray(array) for array in pixels]


def seeded(make: Callable[[dict], nn.Module], settings: dict) -> nn.Module:
    """``make(settings)`` with torch's random state seeded from ``settings["seed"]`` (its initial weights,
    and what else draws from that state while it trains)."""
    torch.manual_seed(settings["seed"])
    return make(settings)


def save_artifact(out_dir: Path, module: nn.Module, settings: dict) -> None:
    with atomic_path(out_dir) as tmp:
        tmp.mkdir()
        save_file({k: v.contiguous() for k, v in module.state_dict().items()}, tmp / WEIGHTS)
        (tmp / SETTINGS).write_text(json.dumps(settings, indent=2) + "\n")
        seal(tmp)


def load_artifact(directory: Path, make: Callable[[dict], nn.Module], command: str) -> tuple[nn.Module, dict]:
    """The module built by ``make(settings)`` with the saved weights, in eval mode and frozen; a damaged
    directory is moved aside (``mmcl.core.integrity.verify``) so that the workflow rebuilds it."""
    directory = Path(directory)
    if not (directory / SETTINGS).exists():
        raise CheckpointError(f"{directory}: no {SETTINGS} (not built yet?); build it with `{command}`")
    verify(directory)
    settings = json.loads((directory / SETTINGS).read_text())
    module = make(settings)
    module.load_state_dict(load_file(directory / WEIGHTS))
    module.eval().requires_grad_(False)
    return module, settings
