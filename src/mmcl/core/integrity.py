"""Content hashes of checkpoints and cached artifacts, checked before anything is used.

Every directory a job produces for later jobs (base model, stage checkpoints, cached teachers'
outputs) is *sealed*: ``sha256.json`` records the SHA-256 of each file in it. A consumer verifies
the seal before loading; the workflow verifies every seal under ``results/`` when it starts and moves
a damaged directory aside (``<name>.corrupt-<time>``, kept for inspection), so that Snakemake
recomputes it and everything downstream instead of silently using it.

This module imports no torch: the Snakefile calls it on every parse.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

from mmcl.core.io import sha256_file, write_json

RECORD = "sha256.json"


class CheckpointError(RuntimeError):
    """A checkpoint or artifact is missing, corrupt or does not fit the model; the message says how to recover."""


def seal(directory: Path) -> None:
    directory = Path(directory)
    hashes = {
        str(path.relative_to(directory)): sha256_file(path)
        for path in sorted(directory.rglob("*"))
        if path.is_file() and path.name != RECORD
    }
    (directory / RECORD).write_text(json.dumps(hashes, indent=2) + "\n")


def problems(directory: Path) -> list[str]:
    """What is wrong with a sealed directory (empty when every file matches its recorded hash)."""
    directory = Path(directory)
    if not (directory / RECORD).exists():
        return [f"no {RECORD} (incomplete or written by an older mmcl)"]
    found = []
    for name, expected in json.loads((directory / RECORD).read_text()).items():
        path = directory / name
        if not path.is_file():
            found.append(f"{name} is missing")
        elif sha256_file(path) != expected:
            found.append(f"{name} does not match its recorded SHA-256")
    return found


def quarantine(directory: Path) -> Path:
    directory = Path(directory)
    aside = directory.with_name(f"{directory.name}.corrupt-{time.strftime('%Y%m%d-%H%M%S')}")
    directory.rename(aside)
    return aside


def verify(directory: Path) -> None:
    """Refuse a sealed directory whose files do not match their seal, and move it aside so it is recomputed."""
    if found := problems(directory):
        aside = quarantine(directory)
        raise CheckpointError(
            f"{directory}: {'; '.join(found)}. Moved to {aside.name}; re-run the workflow to recompute it"
        )


def quarantine_damaged(root: Path, cache: Path, log: Callable[[str], None] = print) -> list[Path]:
    """Verify every sealed directory under ``root``; move damaged ones aside and return them.

    Hashes are recomputed only for files whose size or modification time changed since the last
    check (recorded in ``cache``), so a workflow with large checkpoints still starts quickly; jobs
    verify their own inputs in full before loading them.
    """
    root, cache = Path(root), Path(cache)
    known = json.loads(cache.read_text()) if cache.exists() else {}
    current, moved = {}, []
    for record in sorted(root.rglob(RECORD)):
        directory = record.parent
        if any(part.startswith(".") or ".corrupt-" in part for part in directory.relative_to(root).parts):
            continue  # being written by a running job (mmcl.core.io.atomic_path), or already set aside
        key, stamp = str(directory), _stamp(directory)
        if known.get(key) != stamp and (found := problems(directory)):
            aside = quarantine(directory)
            log(f"mmcl: {directory}: {'; '.join(found)}. Moved to {aside.name}; it will be recomputed.")
            moved.append(aside)
            continue
        current[key] = stamp
    write_json(cache, current)
    return moved


def _stamp(directory: Path) -> list:
    return [
        [str(path.relative_to(directory)), path.stat().st_size, path.stat().st_mtime_ns]
        for path in sorted(directory.rglob("*"))
        if path.is_file()
    ]
