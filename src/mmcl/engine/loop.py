"""The optimisation loop every stage runs, under Hugging Face Accelerate.

The same code runs on a laptop CPU (fp32), on one GPU (bf16 where supported) and under
``accelerate launch`` with several processes (each global batch is split between them).

It survives preemption: every ``checkpoint_every`` steps, and when Slurm sends SIGTERM or SIGUSR1
before killing the job, it saves a resumable state (``mmcl.engine.resume``); SIGTERM/SIGUSR1 then
end the job with exit code 75 so that Snakemake retries it, and the retry resumes where it stopped,
to the same bits as an uninterrupted run on CPU.
"""

from __future__ import annotations

import math
import os
import signal
import sys
import time
from collections.abc import Callable
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from accelerate import Accelerator, DataLoaderConfiguration
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from mmcl.core.registry import ConfigError
from mmcl.engine.batching import Collator, InstructionDataset
from mmcl.engine.resume import load_state, save_state
from mmcl.engine.sampling import StepSampler
from mmcl.engine.schedules import make_scheduler

PREEMPTED = 75  # EX_TEMPFAIL: "try again later"; the job's retry resumes from the saved state
BUCKET = 2**25  # gradient elements all-reduced at once (128 MB in fp32)


class NonFiniteLoss(RuntimeError):
    """The loss became NaN or infinite; training stops instead of saving a broken checkpoint."""


class Preempted(SystemExit):
    def __init__(self):
        super().__init__(PREEMPTED)


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
    checkpoint_every: int = 0  # steps between resumable states (0: only when preempted)

    @classmethod
    def of(cls, source, train, **overrides) -> FitSettings:
        """The settings ``source`` holds under these names (a stage's ``train``, a backbone's ``stage0``, a
        suite's ``alignment``), logging, precision and checkpointing from ``train``, then ``overrides``."""
        own = {name: getattr(source, name) for name in cls.__dataclass_fields__ if hasattr(source, name)}
        shared = {name: getattr(train, name) for name in ("log_every", "precision", "checkpoint_every")}
        return cls(**(own | shared | overrides))


def make_accelerator(precision: str) -> Accelerator:
    if precision == "auto":
        precision = "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "fp32"
    if torch.cuda.is_available():  # TF32 matmuls for what stays fp32 (trainable masters, the loss)
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    accelerator = Accelerator(
        mixed_precision="no" if precision == "fp32" else precision,
        dataloader_config=DataLoaderConfiguration(split_batches=True),  # batch_size stays global
    )
    launched = int(os.environ.get("WORLD_SIZE", "1"))
    if launched != accelerator.num_processes:  # each process would train alone and overwrite the others
        raise RuntimeError(
            f"launched as {launched} processes but they did not join one group (no GPU?); "
            "on CPU set ACCELERATE_USE_CPU=1 (gloo), or launch with as many processes as GPUs"
        )
    return accelerator


def train_only(model: torch.nn.Module, names: set[str]) -> None:
    """Make exactly the parameters ``names`` trainable."""
    for name, param in model.named_parameters():
        param.requires_grad_(name in names)


def average_gradients(parameters: list[torch.nn.Parameter], world: int) -> None:
    """Average the gradients of ``parameters`` over the ``world`` processes, bucket by bucket.

    The loop does this itself instead of DDP's backward hooks, which allow one forward per backward:
    a method whose loss runs the model again (LwF, MoInCL, MoDE) made them raise "Expected to mark a
    variable ready only once". A parameter no process reached keeps no gradient, as in one process;
    one that only some processes reached counts as zero in the others.
    """
    device = parameters[0].device  # NCCL reduces only tensors on the GPU
    reached = torch.tensor([p.grad is not None for p in parameters], dtype=torch.int32, device=device)
    dist.all_reduce(reached)
    grads = []
    for param, anywhere in zip(parameters, reached.tolist(), strict=True):
        if anywhere:
            if param.grad is None:
                param.grad = torch.zeros_like(param)
            grads.append(param.grad)
    bucket: list[torch.Tensor] = []
    size = 0
    for grad in [*grads, None]:  # None: flush the last bucket
        if bucket and (grad is None or grad.dtype != bucket[0].dtype or size >= BUCKET):
            flat = torch.cat([g.reshape(-1) for g in bucket])
            dist.all_reduce(flat)
            flat /= world
            for g, averaged in zip(bucket, flat.split([g.numel() for g in bucket]), strict=True):
                g.copy_(averaged.view_as(g))
            bucket, size = [], 0
        if grad is not None:
            bucket.append(grad)
            size += grad.numel()


@contextmanager
def preemption_flag():
    """A dict whose ``set`` becomes True when SIGTERM or SIGUSR1 arrives; the handlers are restored after."""
    flag = {"set": False}

    def handler(signum, frame):
        flag["set"] = True

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGUSR1)}
    try:
        yield flag
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def fit(
    model: torch.nn.Module,
    dataset: InstructionDataset,
    collator: Collator,
    settings: FitSettings,
    loss_fn: Callable | None = None,
    log: Callable[[str], None] = print,
    resume_dir: Path | None = None,
) -> dict:
    """Train the parameters of ``model`` that require grad; return the model and loss statistics.

    With ``resume_dir``, a state saved there by an interrupted run with the same settings is resumed.
    """
    accelerator = make_accelerator(settings.precision)
    if settings.batch_size % accelerator.num_processes:
        raise ConfigError(
            f"train.batch_size {settings.batch_size} does not split over {accelerator.num_processes} processes; "
            "make it a multiple of the number of processes"
        )
    trainable = [p for p in model.parameters() if p.requires_grad]
    if not trainable:
        raise ValueError("no trainable parameters: the method selected nothing to train at this stage")
    fused = accelerator.device.type == "cuda" or None  # one kernel for all tensors on CUDA
    optimizer = torch.optim.AdamW(trainable, lr=settings.lr, weight_decay=settings.weight_decay, fused=fused)
    scheduler = make_scheduler(
        optimizer, settings.schedule, settings.steps, int(settings.warmup_ratio * settings.steps)
    )
    model, optimizer, scheduler = accelerator.prepare(model, optimizer, scheduler)
    fingerprint = repr(sorted(asdict(settings).items())) + f"|{len(dataset)}|{accelerator.num_processes}"
    start, losses = 0, []
    if resume_dir is not None:
        start, losses = load_state(
            resume_dir,
            model=accelerator.unwrap_model(model),
            optimizer=optimizer,
            scheduler=scheduler,
            fingerprint=fingerprint,
            log=log,
        )
    sampler = StepSampler(len(dataset), settings.batch_size, settings.steps, settings.seed, start=start)
    loader = accelerator.prepare(
        DataLoader(
            dataset,
            batch_sampler=sampler,
            collate_fn=collator.train_batch,
            num_workers=settings.num_workers,
        )
    )

    def checkpoint(step: int) -> None:
        if resume_dir is not None and accelerator.is_main_process:
            save_state(
                resume_dir,
                step=step,
                model=accelerator.unwrap_model(model),
                optimizer=optimizer,
                scheduler=scheduler,
                losses=losses,
                fingerprint=fingerprint,
            )
        accelerator.wait_for_everyone()

    model.train()
    bar = tqdm(
        total=settings.steps,
        initial=start,
        disable=not (accelerator.is_main_process and sys.stderr.isatty()),
        desc="train",
        dynamic_ncols=True,
    )
    started, window, last_finite = time.perf_counter(), [], (None, start)
    by_hand = isinstance(model, DistributedDataParallel)  # gradients averaged by average_gradients
    with preemption_flag() as preempted:
        for step, batch in enumerate(loader, start=start + 1):
            with model.no_sync() if by_hand else nullcontext():
                outputs = model(**batch)
                loss = loss_fn(model, batch, outputs, step) if loss_fn else outputs.loss
                accelerator.backward(loss)
            if by_hand:
                average_gradients(trainable, accelerator.num_processes)
            value = loss.item() if accelerator.num_processes == 1 else accelerator.reduce(loss.detach(), "mean").item()
            if not math.isfinite(value):
                finite, at = last_finite
                after = "" if finite is None else f"; last finite loss {finite:.4f} at step {at}"
                raise NonFiniteLoss(
                    f"non-finite loss ({value}) at step {step}{after}: lower the learning rate "
                    "(train.lr or methods.<name>.lr) or keep train.grad_clip on"
                )
            last_finite = (value, step)
            if settings.grad_clip:  # all parameters, so that FSDP clips by the global norm (frozen ones have none)
                accelerator.clip_grad_norm_(model.parameters(), settings.grad_clip)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)

            window.append(value)
            bar.update(1)
            if step % settings.log_every == 0 or step == settings.steps:
                losses.append(sum(window) / len(window))
                bar.set_postfix(loss=f"{losses[-1]:.3f}")
                if accelerator.is_main_process:
                    samples_per_s = len(window) * settings.batch_size / (time.perf_counter() - started)
                    log(
                        f"step {step}/{settings.steps} | loss {losses[-1]:.4f} | "
                        f"lr {scheduler.get_last_lr()[0]:.2e} | {samples_per_s:.1f} samples/s"
                    )
                window, started = [], time.perf_counter()
            if _stop_requested(preempted, accelerator):
                checkpoint(step)
                log(f"preempted at step {step}/{settings.steps}: state saved to {resume_dir}; re-run to resume")
                raise Preempted()
            if settings.checkpoint_every and step % settings.checkpoint_every == 0 and step < settings.steps:
                checkpoint(step)
    bar.close()
    accelerator.wait_for_everyone()
    return {"model": accelerator.unwrap_model(model), "losses": losses, "accelerator": accelerator}


def _stop_requested(preempted: dict, accelerator: Accelerator) -> bool:
    """Whether any process was told to stop (all processes must stop at the same step)."""
    if accelerator.num_processes == 1:
        return preempted["set"]
    flag = torch.tensor([float(preempted["set"])], device=accelerator.device)
    return bool(accelerator.reduce(flag, reduction="sum").item())
