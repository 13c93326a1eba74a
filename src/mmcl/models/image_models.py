"""What the embedded image tokenizer (``vq``) and the generation judge (``judge``) share: a suite's images
as tensors, a seeded training loop over them, and the sealed artifact directory each is saved to
(``settings.json``: its settings, what it learnt and how well; ``model.safetensors``: its weights).

Both are trained once per suite by their own job (``mmcl train-tokenizer``, ``mmcl train-judge``), before
any model that uses them, and are frozen from then on.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from mmcl.data.media import read_image
from mmcl.data.records import Sample
from mmcl.integrity import seal
from mmcl.io import atomic_path

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


@dataclass
class Fit:
    steps: int
    batch_size: int
    lr: float
    seed: int
    warmup_ratio: float = 0.05


def fit(module: nn.Module, count: int, loss_of: Callable[[torch.Tensor], torch.Tensor], settings: Fit, log) -> dict:
    """Train ``module`` for ``settings.steps`` steps on random batches of rows ``0..count-1`` (drawn from
    ``settings.seed``); ``loss_of(rows)`` is a batch's loss. Returns the last loss and the time taken."""
    from mmcl.training.loop import make_scheduler

    generator = torch.Generator().manual_seed(settings.seed)
    optimizer = torch.optim.AdamW(module.parameters(), lr=settings.lr, weight_decay=0.0)
    scheduler = make_scheduler(optimizer, "cosine", settings.steps, int(settings.steps * settings.warmup_ratio))
    module.train()
    started = time.perf_counter()
    for step in range(1, settings.steps + 1):
        loss = loss_of(torch.randint(count, (settings.batch_size,), generator=generator))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        scheduler.step()
        if step % max(1, settings.steps // 10) == 0 or step == settings.steps:
            log(f"  step {step}/{settings.steps}: loss {loss.item():.4f}")
    module.eval()
    return {
        "steps": settings.steps,
        "final_loss": round(loss.item(), 5),
        "seconds": round(time.perf_counter() - started, 1),
    }


def save_artifact(out_dir: Path, module: nn.Module, settings: dict) -> None:
    with atomic_path(out_dir) as tmp:
        tmp.mkdir()
        save_file({k: v.contiguous() for k, v in module.state_dict().items()}, tmp / WEIGHTS)
        (tmp / SETTINGS).write_text(json.dumps(settings, indent=2) + "\n")
        seal(tmp)


def load_artifact(directory: Path, make: Callable[[dict], nn.Module], command: str) -> tuple[nn.Module, dict]:
    """The module built by ``make(settings)`` with the saved weights, in eval mode and frozen; a damaged
    directory is moved aside (``mmcl.models.checkpoint.verify``) so that the workflow rebuilds it."""
    from mmcl.models.checkpoint import CheckpointError, verify

    directory = Path(directory)
    if not (directory / SETTINGS).exists():
        raise CheckpointError(f"{directory}: no {SETTINGS} (not built yet?); build it with `{command}`")
    verify(directory)
    settings = json.loads((directory / SETTINGS).read_text())
    module = make(settings)
    module.load_state_dict(load_file(directory / WEIGHTS))
    module.eval().requires_grad_(False)
    return module, settings
