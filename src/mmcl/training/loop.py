"""The optimisation loop every stage runs, under Hugging Face Accelerate.

The same code runs on a laptop CPU (fp32), on one GPU (bf16 where supported) and under
``accelerate launch`` with several processes (the global batch is split across them).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from accelerate import Accelerator, DistributedDataParallelKwargs
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from mmcl.training.batching import Collator, InstructionDataset


@dataclass
class FitSettings:
    steps: int
    batch_size: int  # global
    lr: float
    weight_decay: float = 0.0
    warmup_ratio: float = 0.0
    schedule: str = "cosine"
    grad_clip: float = 0.0
    log_every: int = 25
    seed: int = 0
    precision: str = "auto"
    num_workers: int = 0


def make_accelerator(precision: str) -> Accelerator:
    if precision == "auto":
        precision = "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "fp32"
    # Projectors of modalities absent from a batch get no gradient: DDP must tolerate that.
    ddp = DistributedDataParallelKwargs(find_unused_parameters=True)
    return Accelerator(mixed_precision="no" if precision == "fp32" else precision, kwargs_handlers=[ddp])


def make_scheduler(optimizer, schedule: str, steps: int, warmup: int):
    """Linear warm-up, then constant, linear or cosine decay to zero (torch's own schedulers;
    ``transformers.get_scheduler`` would import peft and cost seconds in every job)."""
    from torch.optim import lr_scheduler

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


def _batches(loader: DataLoader) -> Iterator[dict]:
    """Cycle through the data for as many steps as asked; each pass reshuffles (seeded)."""
    while True:
        yield from loader


def fit(
    model: torch.nn.Module,
    dataset: InstructionDataset,
    collator: Collator,
    settings: FitSettings,
    loss_fn: Callable | None = None,
    log: Callable[[str], None] = print,
) -> dict:
    """Train the parameters of ``model`` that require grad; return timing and loss statistics."""
    accelerator = make_accelerator(settings.precision)
    trainable = [p for p in model.parameters() if p.requires_grad]
    if not trainable:
        raise ValueError("no trainable parameters: the method selected nothing to train at this stage")
    optimizer = torch.optim.AdamW(trainable, lr=settings.lr, weight_decay=settings.weight_decay)
    scheduler = make_scheduler(
        optimizer, settings.schedule, settings.steps, int(settings.warmup_ratio * settings.steps)
    )
    per_process = max(1, settings.batch_size // accelerator.num_processes)
    loader = DataLoader(
        dataset,
        batch_size=per_process,
        shuffle=True,
        drop_last=len(dataset) >= settings.batch_size,
        collate_fn=collator.train_batch,
        generator=torch.Generator().manual_seed(settings.seed),
        num_workers=settings.num_workers,
    )
    model, optimizer, loader, scheduler = accelerator.prepare(model, optimizer, loader, scheduler)
    model.train()

    show_bar = accelerator.is_main_process and sys.stderr.isatty()
    bar = tqdm(total=settings.steps, disable=not show_bar, desc="train", dynamic_ncols=True)
    batches = _batches(loader)
    started, window_loss, window_samples, losses = time.perf_counter(), 0.0, 0, []
    for step in range(1, settings.steps + 1):
        batch = next(batches)
        outputs = model(**batch)
        loss = loss_fn(model, batch, outputs) if loss_fn else outputs.loss
        accelerator.backward(loss)
        if settings.grad_clip:
            accelerator.clip_grad_norm_(trainable, settings.grad_clip)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)

        window_loss += loss.item()
        window_samples += batch["input_ids"].shape[0] * accelerator.num_processes
        bar.update(1)
        if step % settings.log_every == 0 or step == settings.steps:
            elapsed = time.perf_counter() - started
            mean = window_loss / (settings.log_every if step % settings.log_every == 0 else step % settings.log_every)
            losses.append(mean)
            bar.set_postfix(loss=f"{mean:.3f}")
            if accelerator.is_main_process:
                log(
                    f"step {step}/{settings.steps} | loss {mean:.4f} | lr {scheduler.get_last_lr()[0]:.2e} "
                    f"| {window_samples / elapsed:.1f} samples/s"
                )
            window_loss, window_samples, started = 0.0, 0, time.perf_counter()
    bar.close()
    accelerator.wait_for_everyone()
    return {"model": accelerator.unwrap_model(model), "losses": losses, "accelerator": accelerator}
