"""The optimisation loop every stage runs, under Hugging Face Accelerate.

The same code runs on a laptop CPU (fp32), on one GPU (bf16 where supported) and under
``accelerate launch`` with several processes (each global batch is split between them, and each
process's share into micro-batches whose gradients are accumulated into one optimizer step).

It survives preemption: every ``checkpoint_minutes`` of wall time, every ``checkpoint_every`` steps,
and when Slurm sends SIGTERM or SIGUSR1 before killing the job, it saves a resumable state
(``mmcl.engine.resume``); SIGTERM/SIGUSR1 then end the job with exit code 75 so that Snakemake
retries it, and the retry resumes where it stopped, to the same bits as an uninterrupted run on CPU.

The host waits for the accelerator only at log and checkpoint steps: losses stay on the device in
between (and a non-finite one is reported there, with the step it first appeared at).
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
from accelerate.utils import DistributedType
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from mmcl.config.fingerprint import UNFINGERPRINTED
from mmcl.core.registry import ConfigError
from mmcl.data.records import Sample
from mmcl.engine.batching import IGNORE, Collator, InstructionDataset, Item
from mmcl.engine.precision import place_weights, resolve
from mmcl.engine.resume import load_sharded_state, load_state, save_sharded_state, save_state
from mmcl.engine.sampling import GroupedStepSampler, StepSampler
from mmcl.engine.schedules import make_scheduler

PREEMPTED = 75  # EX_TEMPFAIL: "try again later"; the job's retry resumes from the saved state
BUCKET = 2**25  # gradient elements all-reduced at once (128 MB in fp32)
# Strategies whose optimizer state is split between the processes: every rank saves its shard of a
# resumable state (mmcl.engine.resume.save_sharded_state), and they keep their own dtypes.
SHARDED = (DistributedType.FSDP, DistributedType.DEEPSPEED)
clock = time.monotonic  # wall time between resumable states (a name of its own, for tests to replace)


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
    num_workers: int | None = 0  # DataLoader workers (None: cpus per process - 1 on CUDA, 0 on CPU)
    micro_batch_size: int | None = None  # samples per forward on each process (None: its whole share)
    group_by_length: bool = False  # batches of one modality and similar length (sampling.GroupedStepSampler)
    checkpoint_every: int = 0  # steps between resumable states (0: not by steps)
    checkpoint_minutes: float = 0.0  # wall time between resumable states (0: not by time)

    @classmethod
    def of(cls, source, train, **overrides) -> FitSettings:
        """The settings ``source`` holds under these names (a stage's ``train``, a backbone's ``stage0``, a
        suite's ``alignment``), logging, precision, checkpointing and what sets only speed and memory from
        ``train``, then ``overrides``."""
        own = {name: getattr(source, name) for name in cls.__dataclass_fields__ if hasattr(source, name)}
        shared = {name: getattr(train, name) for name in SHARED}
        return cls(**(own | shared | overrides))

    def resume_fingerprint(self) -> str:
        """What a resumable state must have been saved under: every setting but those that change only
        speed and memory (the stage fingerprints' too), so that e.g. a smaller micro-batch resumes."""
        kept = {k: v for k, v in asdict(self).items() if k not in UNFINGERPRINTED["train"]}
        return repr(sorted(kept.items()))


SHARED = ("log_every", "precision", "checkpoint_every", "checkpoint_minutes", "micro_batch_size", "num_workers")


def make_accelerator(precision: str) -> Accelerator:
    precision = resolve(precision)
    if torch.cuda.is_available():  # TF32 matmuls for what stays fp32 (trainable masters, the loss)
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    accelerator = Accelerator(
        mixed_precision="no" if precision == "fp32" else precision,
        # batch_size stays global; pinned batches (see fit) are copied to the GPU while it computes
        dataloader_config=DataLoaderConfiguration(split_batches=True, non_blocking=torch.cuda.is_available()),
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


def average_gradients(parameters: list[torch.nn.Parameter], world: int, flags=None) -> None:
    """Average the gradients of ``parameters`` over the ``world`` processes, bucket by bucket.

    The loop does this itself instead of DDP's backward hooks, which allow one forward per backward:
    a method whose loss runs the model again (LwF, MoInCL, MoDE) made them raise "Expected to mark a
    variable ready only once". A parameter no process reached keeps no gradient, as in one process;
    one that only some processes reached counts as zero in the others. Which ones were reached is
    all-reduced on the ``flags`` group (gloo, on the CPU: reading it back waits for no GPU work), else on
    the gradients' device (NCCL reduces only GPU tensors).
    """
    device = parameters[0].device if flags is None else "cpu"
    reached = torch.tensor([p.grad is not None for p in parameters], dtype=torch.int32, device=device)
    dist.all_reduce(reached, group=flags)
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


def loader_workers(requested: int | None, device: torch.device) -> int:
    """DataLoader worker processes: those asked for, else on CUDA the process's share of the CPUs (its
    affinity, capped by Slurm's allocation, split between the processes of the node) less the main one.
    On CPU none: the main process's math already runs on every core, which workers would take from it."""
    if requested is not None:
        return requested
    if device.type != "cuda":
        return 0
    cpus = len(os.sched_getaffinity(0))
    if allocated := os.environ.get("SLURM_CPUS_PER_TASK"):
        cpus = min(cpus, int(allocated))
    return max(0, cpus // int(os.environ.get("LOCAL_WORLD_SIZE", "1")) - 1)


@dataclass(frozen=True)
class MicroBatches:
    """The loader's collate function: a process's share of a global batch, collated in micro-batches
    of ``size`` samples (None: all of them in one)."""

    collate: Callable[[list[Item]], dict]
    size: int | None

    def __call__(self, items: list[Item]) -> list[dict]:
        size = self.size or len(items)
        return [self.collate(items[i : i + size]) for i in range(0, len(items), size)]


def token_shares(micro_batches: list[dict], processes: int) -> torch.Tensor:
    """Each micro-batch's share of the global batch's supervised tokens (labels after the causal shift),
    times the number of processes (which average their gradients): the accumulated gradient is then the
    global batch's mean over tokens, however the batch is split between processes and micro-batches."""
    counts = torch.stack([(batch["labels"][:, 1:] != IGNORE).sum() for batch in micro_batches])
    total = counts.sum()
    if processes > 1:
        dist.all_reduce(total)  # on the device: nothing waits for it but the backward that needs it
    return counts * processes / total


def length_key(sample: Sample) -> tuple[str, int]:
    """What ``train.group_by_length`` groups a sample by: its modality and its text's length in characters
    (the longest answer: a caption's target is drawn among its references)."""
    return sample.modality, len(sample.instruction) + max(map(len, sample.answers), default=0)


def check_micro_batch(settings: FitSettings, processes: int) -> None:
    if settings.batch_size % processes:
        raise ConfigError(
            f"train.batch_size {settings.batch_size} does not split over {processes} processes; "
            "make it a multiple of the number of processes"
        )
    share, micro = settings.batch_size // processes, settings.micro_batch_size
    if micro is not None and share % micro:
        divisors = [d for d in range(1, share + 1) if share % d == 0]
        raise ConfigError(
            f"train.micro_batch_size {micro} does not divide the {share} samples of a batch each of the "
            f"{processes} processes trains on (batch_size {settings.batch_size} / {processes}); "
            f"set it to one of {divisors}, or null for the whole share in one forward"
        )


def configure_strategy(accelerator: Accelerator, model: torch.nn.Module, settings: FitSettings) -> None:
    """Tell DeepSpeed and FSDP, before ``prepare``, what they cannot infer from a model prepared without a
    DataLoader: the micro-batch, the accumulation and the clipping, and the layers to shard by."""
    if accelerator.distributed_type == DistributedType.DEEPSPEED:
        # Accumulation goes through the engine (``backward`` below marks each optimizer step's last
        # micro-batch); it owns the step, so it also clips.
        share = settings.batch_size // accelerator.num_processes
        micro = settings.micro_batch_size or share
        accelerator.state.deepspeed_plugin.deepspeed_config.update(
            train_micro_batch_size_per_gpu=micro,
            gradient_accumulation_steps=share // micro,
            train_batch_size=settings.batch_size,
            gradient_clipping=settings.grad_clip,
        )
    elif accelerator.distributed_type == DistributedType.FSDP:
        from torch.distributed.fsdp.wrap import transformer_auto_wrap_policy

        plugin = accelerator.state.fsdp_plugin
        if plugin.auto_wrap_policy is transformer_auto_wrap_policy and plugin.transformer_cls_names_to_wrap is None:
            plugin.transformer_cls_names_to_wrap = declared_layers(model)  # --fsdp_transformer_layer_cls_to_wrap wins


def declared_layers(model: torch.nn.Module) -> list[str]:
    """The layer classes the model's LLM declares must stay whole (transformers' ``_no_split_modules``: its
    decoder layers), among those it holds: one FSDP unit each. The rest (encoders, projectors) shares the
    root unit."""
    llm = getattr(model, "llm", model)  # MultimodalLM and UnifiedLM hold theirs as `llm`
    present = {type(module).__name__ for module in llm.modules()}
    declared = [name for module in llm.modules() for name in getattr(module, "_no_split_modules", None) or ()]
    layers = [name for name in dict.fromkeys(declared) if name in present]
    if not layers:
        raise ConfigError(
            f"FSDP: the {type(llm).__name__} declares no layer classes (_no_split_modules), so there is nothing "
            "to shard it by; name its decoder layer class with `accelerate launch "
            "--fsdp_transformer_layer_cls_to_wrap <class>`, or train it with ddp or deepspeed_zero2"
        )
    return layers


def fit(
    model: torch.nn.Module,
    dataset: InstructionDataset,
    collator: Collator,
    settings: FitSettings,
    loss_fn: Callable | None = None,
    log: Callable[[str], None] = print,
    resume_dir: Path | None = None,
    keep_fp32: set[str] | None = None,
) -> dict:
    """Train the parameters of ``model`` that require grad; return the model (unwrapped and as prepared),
    the loss statistics and the accelerator. With ``keep_fp32``, frozen weights but those it names take the
    compute dtype (``mmcl.engine.precision``); without, every weight stays as loaded (for a job that saves
    the whole model).

    With ``resume_dir``, a state saved there by an interrupted run with the same settings is resumed.
    """
    accelerator = make_accelerator(settings.precision)
    check_micro_batch(settings, accelerator.num_processes)
    trainable = [p for p in model.parameters() if p.requires_grad]
    if not trainable:
        raise ValueError("no trainable parameters: the method selected nothing to train at this stage")
    if keep_fp32 is not None and accelerator.distributed_type not in SHARDED:  # they keep their own dtypes
        place_weights(model, settings.precision, keep_fp32)
    fused = accelerator.device.type == "cuda" or None  # one kernel for all tensors on CUDA
    optimizer = torch.optim.AdamW(trainable, lr=settings.lr, weight_decay=settings.weight_decay, fused=fused)
    scheduler = make_scheduler(
        optimizer, settings.schedule, settings.steps, int(settings.warmup_ratio * settings.steps)
    )
    configure_strategy(accelerator, model, settings)
    model, optimizer, scheduler = accelerator.prepare(model, optimizer, scheduler)
    fingerprint = settings.resume_fingerprint() + f"|{len(dataset)}|{accelerator.num_processes}"
    sharded = accelerator.distributed_type in SHARDED
    start, losses = 0, []
    if resume_dir is not None and sharded:
        start, losses = load_sharded_state(resume_dir, accelerator, fingerprint=fingerprint, log=log)
    elif resume_dir is not None:
        start, losses = load_state(
            resume_dir,
            model=accelerator.unwrap_model(model),
            optimizer=optimizer,
            scheduler=scheduler,
            fingerprint=fingerprint,
            log=log,
        )
    if settings.group_by_length:
        keys = [length_key(sample) for sample in dataset.samples]
        sampler = GroupedStepSampler(keys, settings.batch_size, settings.steps, settings.seed, start=start)
    else:
        sampler = StepSampler(len(dataset), settings.batch_size, settings.steps, settings.seed, start=start)
    workers = loader_workers(settings.num_workers, accelerator.device)
    loader = accelerator.prepare(
        DataLoader(
            dataset,
            batch_sampler=sampler,
            collate_fn=MicroBatches(collator.train_batch, settings.micro_batch_size),
            num_workers=workers,
            pin_memory=accelerator.device.type == "cuda",
            persistent_workers=workers > 0,
        )
    )
    deepspeed = accelerator.distributed_type == DistributedType.DEEPSPEED
    by_hand = isinstance(model, DistributedDataParallel)  # gradients averaged by average_gradients
    # Flags the processes agree on (stop, save, which parameters have gradients) are all-reduced on the CPU
    # (gloo): reading an NCCL reduction back on the host would wait for the GPU's queue at every step.
    control = None
    if accelerator.num_processes > 1 and dist.get_backend() != "gloo":
        control = dist.new_group(backend="gloo")

    def backward(loss: torch.Tensor, last: bool) -> None:
        if deepspeed:  # the engine accumulates until `last`, then reduces, clips and steps
            accelerator.deepspeed_engine_wrapped.backward(loss, sync_gradients=last, scale_wrt_gas=False)
        else:
            accelerator.backward(loss)

    def train_step(micro_batches: list[dict], step: int) -> torch.Tensor:
        """Forward and backward of each micro-batch, one optimizer step; the step's loss, on the device."""
        # Each micro-batch's loss weighs its share of the supervised tokens: the gradient is the global batch's
        # mean over tokens. A method's extra terms (distillation, penalties) are weighted alike, and the shares
        # sum to 1 over micro-batches and processes: a term the same in each micro-batch counts once per step.
        processes = accelerator.num_processes
        shares = token_shares(micro_batches, processes) if len(micro_batches) > 1 or processes > 1 else None
        total = None
        for index, batch in enumerate(micro_batches):
            with model.no_sync() if by_hand else nullcontext():  # averaged once, after the last micro-batch
                outputs = model(**batch)
                loss = loss_fn(model, batch, outputs, step) if loss_fn else outputs.loss
                if shares is not None:
                    loss = loss * shares[index]
                backward(loss, last=index == len(micro_batches) - 1)
            total = loss.detach() if total is None else total + loss.detach()
        if by_hand:
            average_gradients(trainable, accelerator.num_processes, control)
        # all parameters, so that FSDP clips by the global norm (frozen ones have none); DeepSpeed clipped
        if settings.grad_clip and not deepspeed:
            accelerator.clip_grad_norm_(model.parameters(), settings.grad_clip)
        optimizer.step()  # under DeepSpeed these two are Accelerate's no-ops: the engine stepped
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        return total

    def checkpoint(step: int) -> None:
        if resume_dir is not None and sharded:
            save_sharded_state(resume_dir, accelerator, step=step, losses=losses, fingerprint=fingerprint)
        elif resume_dir is not None and accelerator.is_main_process:
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
    pending: list[torch.Tensor] = []  # losses of the steps since the host last read them, on the device
    window: list[float] = []  # losses since the last log line
    last_finite = (None, start)
    started = time.perf_counter()

    def read_losses(step: int) -> None:
        """Bring the pending losses (steps ``step - len(pending) + 1 .. step``) to the host, at once; raise at
        the first non-finite one, as if it had been read at its own step."""
        nonlocal last_finite
        if not pending:
            return
        values = torch.stack(pending)
        if accelerator.num_processes > 1:
            values = accelerator.reduce(values, "mean")
        for at, value in enumerate(values.tolist(), start=step - len(pending) + 1):
            if not math.isfinite(value):
                finite, when = last_finite
                after = "" if finite is None else f"; last finite loss {finite:.4f} at step {when}"
                raise NonFiniteLoss(
                    f"non-finite loss ({value}) at step {at}{after}: lower the learning rate "
                    "(train.lr or methods.<name>.lr) or keep train.grad_clip on"
                )
            last_finite = (value, at)
            window.append(value)
        pending.clear()

    saved_at = clock()
    with preemption_flag() as preempted:
        for step, micro_batches in enumerate(loader, start=start + 1):
            pending.append(train_step(micro_batches, step))
            bar.update(1)
            logs = step % settings.log_every == 0 or step == settings.steps
            every = bool(settings.checkpoint_every) and step % settings.checkpoint_every == 0
            timed = bool(settings.checkpoint_minutes) and clock() - saved_at >= 60 * settings.checkpoint_minutes
            stop, timed = _agree((preempted["set"], timed), accelerator, control)
            save = (every or timed) and step < settings.steps
            if logs or stop or save:
                read_losses(step)  # before any state is saved: a state never holds a diverged model
            if logs:
                losses.append(sum(window) / len(window))
                bar.set_postfix(loss=f"{losses[-1]:.3f}")
                if accelerator.is_main_process:
                    samples_per_s = len(window) * settings.batch_size / (time.perf_counter() - started)
                    log(
                        f"step {step}/{settings.steps} | loss {losses[-1]:.4f} | "
                        f"lr {scheduler.get_last_lr()[0]:.2e} | {samples_per_s:.1f} samples/s"
                    )
                window, started = [], time.perf_counter()
            if stop:
                checkpoint(step)
                saved = f"state saved to {resume_dir}; re-run to resume" if resume_dir else "no state saved"
                log(f"preempted at step {step}/{settings.steps}: {saved}")
                raise Preempted()
            if save:
                checkpoint(step)
                saved_at = clock()
    bar.close()
    accelerator.wait_for_everyone()
    return {
        "model": accelerator.unwrap_model(model),
        "prepared": model,
        "losses": losses,
        "accelerator": accelerator,
    }


def _agree(flags: tuple[bool, ...], accelerator: Accelerator, group) -> tuple[bool, ...]:
    """Each flag, true if it is true in any process (all processes must stop or save at the same step)."""
    if accelerator.num_processes == 1:
        return flags
    reduced = torch.tensor([int(flag) for flag in flags])
    dist.all_reduce(reduced, op=dist.ReduceOp.MAX, group=group)
    return tuple(bool(flag) for flag in reduced.tolist())
