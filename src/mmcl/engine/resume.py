"""A stage's resumable training state, saved every ``train.checkpoint_minutes`` of wall time (and every
``train.checkpoint_every`` steps) and when Slurm warns of preemption.

``<checkpoint>.resume/`` beside the stage's final checkpoint (which Snakemake owns and deletes when a
job fails; this directory it leaves alone). With one process or DDP, rank 0 writes it from its own
replicas, which are whole::

    state.safetensors   trainable parameters, optimizer moments, RNG states
    state.json          step, scheduler and optimizer settings, losses so far, the run's fingerprint
                        and the SHA-256 of state.safetensors

Only safetensors and JSON: loading never unpickles anything. Under FSDP and DeepSpeed, where each rank
holds a shard of the parameters or optimizer state, every rank writes its own shard through
``Accelerator.save_state`` (FSDP's sharded state dict, the DeepSpeed engine's checkpoint; their formats
pickle the optimizer's settings and RNG states, which this job wrote itself) and ``state.json`` records
the step, losses, fingerprint and every file's SHA-256. The data position needs no saving: a step's
batch is a function of (seed, step) (``mmcl.engine.sampling``).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from mmcl.core.io import atomic_path, sha256_file

TENSORS = "state.safetensors"
META = "state.json"


def trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.detach().cpu().contiguous() for name, p in model.named_parameters() if p.requires_grad}


def save_state(path: Path, *, step: int, model, optimizer, scheduler, losses: list[float], fingerprint: str) -> None:
    tensors = {f"param.{name}": value for name, value in trainable_state(model).items()}
    optim = optimizer.state_dict()
    scalars: dict[str, dict] = {}
    for index, entries in optim["state"].items():
        for key, value in entries.items():
            if torch.is_tensor(value):
                tensors[f"optim.{index}.{key}"] = value.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(index), {})[key] = value
    tensors["rng.cpu"] = torch.get_rng_state()
    if torch.cuda.is_available():
        for device, state in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{device}"] = state
    with atomic_path(path) as tmp:
        tmp.mkdir()
        save_file(tensors, tmp / TENSORS)
        meta = {
            "step": step,
            "fingerprint": fingerprint,
            "losses": losses,
            "scheduler": scheduler.state_dict(),
            "optimizer": {"param_groups": optim["param_groups"], "scalars": scalars},
            "sha256": sha256_file(tmp / TENSORS),
        }
        (tmp / META).write_text(json.dumps(meta) + "\n")


def load_state(path: Path, *, model, optimizer, scheduler, fingerprint: str, log) -> tuple[int, list[float]]:
    """Restore a saved state into the prepared model/optimizer/scheduler; return (step, losses).

    Returns (0, []) and leaves everything as it is when there is no usable state: none saved, saved
    by a run with other settings, or damaged (a resume state is a cache; starting over is safe).
    """

    def intact(meta: dict) -> bool:
        return (path / TENSORS).exists() and sha256_file(path / TENSORS) == meta["sha256"]

    if (meta := usable_meta(path, fingerprint, intact, log)) is None:
        return 0, []
    tensors = load_file(path / TENSORS)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if param.requires_grad:
                param.copy_(tensors[f"param.{name}"])
    state: dict[int, dict] = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, index, name = key.split(".", 2)
            state.setdefault(int(index), {})[name] = value
    for index, entries in meta["optimizer"]["scalars"].items():
        state.setdefault(int(index), {}).update(entries)
    optimizer.load_state_dict({"state": state, "param_groups": meta["optimizer"]["param_groups"]})
    scheduler.load_state_dict(meta["scheduler"])
    torch.set_rng_state(tensors["rng.cpu"])
    cuda = [tensors[key] for key in sorted(tensors) if key.startswith("rng.cuda.")]
    if torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)
    log(f"resuming at step {meta['step']} from {path}")
    return meta["step"], meta["losses"]


def save_sharded_state(path: Path, accelerator, *, step: int, losses: list[float], fingerprint: str) -> None:
    """Every rank writes its shard into a sibling directory, which replaces ``path`` once all have: a
    preemption mid-save leaves the previous state. Call on every rank (the directory must be shared)."""
    partial = path.with_name(path.name + ".partial")
    if accelerator.is_main_process:
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(partial)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        meta = {"step": step, "fingerprint": fingerprint, "losses": losses, "sha256": _digests(partial)}
        (partial / META).write_text(json.dumps(meta) + "\n")
        shutil.rmtree(path, ignore_errors=True)
        partial.replace(path)
    accelerator.wait_for_everyone()


def load_sharded_state(path: Path, accelerator, *, fingerprint: str, log) -> tuple[int, list[float]]:
    """``load_state``'s counterpart for ``save_sharded_state``: every rank reads its shard into the prepared
    model, optimizer and scheduler. Call on every rank, after ``accelerator.prepare``."""
    if (meta := usable_meta(path, fingerprint, lambda meta: _digests(path) == meta.get("sha256"), log)) is None:
        return 0, []
    accelerator.load_state(path)
    log(f"resuming at step {meta['step']} from {path}")
    return meta["step"], meta["losses"]


def usable_meta(path: Path, fingerprint: str, intact, log) -> dict | None:
    """A saved state's ``state.json``, or None when there is none, it is another run's, or ``intact(meta)``
    finds its files damaged (a resume state is a cache: starting over is safe)."""
    if not (path / META).exists():
        return None
    meta = json.loads((path / META).read_text())
    if meta.get("fingerprint") != fingerprint:
        log(f"{path}: saved by a run with other settings; starting the stage from its beginning")
        return None
    if not intact(meta):
        log(f"{path}: damaged (SHA-256 does not match its record); starting the stage from its beginning")
        return None
    return meta


def _digests(directory: Path) -> dict[str, str]:
    files = sorted(file for file in directory.rglob("*") if file.is_file() and file.name != META)
    return {str(file.relative_to(directory)): sha256_file(file) for file in files}


def discard_state(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
    shutil.rmtree(path.with_name(path.name + ".partial"), ignore_errors=True)
