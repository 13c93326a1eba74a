"""Atomic file and directory writes, hashing, and JSON helpers.

A job's outputs appear all at once or not at all: everything is written beside its final path and
renamed into place, so a killed job never leaves a half-written file that looks complete.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import math
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary sibling of ``path``; on success it replaces ``path`` (file or directory).

    When the disk fills up, the partial copy is removed and an OSError(ENOSPC) says which output
    failed and how much space it needs.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent)) / path.name
    try:
        yield tmp
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        os.replace(tmp, path)
    except Exception as err:
        if not disk_full(err):
            raise
        shutil.rmtree(tmp.parent, ignore_errors=True)  # first, so that the space it held counts as free
        free = shutil.disk_usage(path.parent).free / 1e6
        raise OSError(
            errno.ENOSPC,
            f"{path}: disk full: this output needs more than the {free:,.1f} MB free on its filesystem; "
            "free some space and re-run. Nothing was marked complete: the partial output was removed",
        ) from err
    finally:
        shutil.rmtree(tmp.parent, ignore_errors=True)


def disk_full(err: BaseException) -> bool:
    """Whether ``err`` (or what caused it) is a full disk; native writers such as safetensors raise
    their own exception type, with the OS message in its text."""
    while err is not None:
        if getattr(err, "errno", None) == errno.ENOSPC or os.strerror(errno.ENOSPC) in str(err):
            return True
        err = err.__cause__ or err.__context__
    return False


def _json_safe(obj):
    """NaN/inf are not JSON: write them as null."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_json_safe(v) for v in obj]
    return obj


def write_json(path: str | Path, data) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(_json_safe(data), indent=2, sort_keys=False) + "\n")


def read_json(path: str | Path):
    return json.loads(Path(path).read_text())


def write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)
