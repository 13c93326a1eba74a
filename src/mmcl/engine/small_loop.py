"""The training loop of the small artifacts that models are assembled from or scored with: the embedded
VQ-VAE (``mmcl train-tokenizer``), the judge of generated images (``mmcl train-judge``) and the tiny
backbone's perception pretraining of its encoders. One process, no Accelerate, random batches of rows.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from mmcl.engine.schedules import make_scheduler


@dataclass
class SmallFit:
    steps: int
    batch_size: int
    lr: float
    warmup_ratio: float = 0.05
    weight_decay: float = 0.0


def fit_small(
    module: nn.Module,
    count: int,
    loss_of: Callable[[torch.Tensor], torch.Tensor],
    settings: SmallFit,
    generator: torch.Generator,
    log: Callable[[str], None],
) -> dict:
    """Train every parameter of ``module`` for ``settings.steps`` AdamW steps (linear warm-up, cosine decay)
    on batches of rows ``0..count-1`` drawn with replacement from ``generator``; ``loss_of(rows)`` is a
    batch's loss. Leaves ``module`` in eval mode; returns the last loss and the time taken."""
    optimizer = torch.optim.AdamW(module.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
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
