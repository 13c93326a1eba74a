"""Learning-rate schedules: linear warm-up, then constant, linear or cosine decay."""

from __future__ import annotations

from torch.optim import lr_scheduler


def make_scheduler(optimizer, schedule: str, steps: int, warmup: int):
    """Linear warm-up, then constant, linear or cosine decay to zero (torch's own schedulers;
    ``transformers.get_scheduler`` would import peft and cost seconds in every job)."""
    decay_steps = max(1, steps - warmup)
    decay = {
        "constant": lambda: lr_scheduler.ConstantLR(optimizer, factor=1.0, total_iters=0),
        "linear": lambda: lr_scheduler.LinearLR(optimizer, 1.0, 0.0, total_iters=decay_steps),
        "cosine": lambda: lr_scheduler.CosineAnnealingLR(optimizer, T_max=decay_steps),
    }[schedule]()
    if warmup == 0:
        return decay
    ramp = lr_scheduler.LinearLR(optimizer, start_factor=1.0 / (warmup + 1), end_factor=1.0, total_iters=warmup)
    return lr_scheduler.SequentialLR(optimizer, [ramp, decay], milestones=[warmup])
