"""The per-sample response store: every prediction an evaluation makes, kept as it is made.

``responses.jsonl`` in an evaluation's directory is an append-only log, one JSON line per prediction::

    {"run": ..., "key": ..., "task": ..., "id": ..., "prediction": ...}

``run`` hashes the model (the seals of the start model and of the stage checkpoint), the decoding
settings and the data; ``key`` also the test record's content (its instruction, media and options; not
its reference answers, so fixing a reference re-scores without regenerating). Lines are
appended one batch at a time and flushed to disk, so an evaluation killed at any point (SIGTERM,
``kill -9``, a node failure) keeps every batch it finished, and its re-run generates only the rest.
Batches are a fixed partition of each task's samples (``batches``), so the re-run makes the same
batches, and the same predictions, as an uninterrupted run. Another model, decoding setting or record
content has another key: lines of another run are dropped when the store is opened (the log is
compacted); those of the same run are kept, whichever tasks this evaluation asks for.

This module imports no torch.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

from mmcl.config.fingerprint import digest
from mmcl.core.integrity import RECORD
from mmcl.core.io import atomic_path, sha256_file
from mmcl.data.records import Sample

LOG = "responses.jsonl"


def run_key(start_dir: Path, checkpoint: Path | None, decoding: dict, data_manifest: Path) -> str:
    """What every prediction of an evaluation depends on: the model, the decoding settings and the data (its
    manifest's hashes of every file; a data directory made by hand, without one, by its records alone)."""
    data = sha256_file(data_manifest) if Path(data_manifest).exists() else None
    return digest([model_key(start_dir, checkpoint), decoding, data])


def model_key(start_dir: Path, checkpoint: Path | None) -> str:
    """What identifies the evaluated model: the seal of its start model and of its stage checkpoint."""
    seals = [sha256_file(Path(start_dir) / RECORD)]
    if checkpoint is not None:
        seals.append(sha256_file(Path(checkpoint) / RECORD))
    return digest(seals)


def sample_key(run_key: str, sample: Sample) -> str:
    """A prediction's key: the model and decoding (``run_key``) and what of the record the model reads."""
    return digest([run_key, sample.task, sample.modality, sample.instruction, list(sample.media), sample.options])


def batches(samples: Sequence[Sample], batch_size: int, length) -> list[list[Sample]]:
    """Fixed batches of ``samples``, similar prompt lengths together (less padding); a function of the
    samples alone, so a resumed evaluation batches what is left as the uninterrupted run did."""
    ordered = sorted(range(len(samples)), key=lambda i: (length(samples[i]), i))
    return [[samples[i] for i in ordered[at : at + batch_size]] for at in range(0, len(ordered), batch_size)]


def read_log(path: Path) -> tuple[list[str], bool]:
    """The log's complete lines, and whether a last line was cut by a kill (no newline, or not JSON)."""
    if not path.exists():
        return [], False
    lines = path.read_text().splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        return lines[:-1], True
    for at, line in enumerate(lines):
        try:
            json.loads(line)
        except json.JSONDecodeError:
            return lines[:at], True
    return lines, False


class ResponseStore:
    """The predictions of one evaluation directory, read back on open and appended batch by batch."""

    def __init__(self, directory: Path, run: str):
        """The store of ``directory`` for the model and decoding ``run`` hashes (``run_key``)."""
        self.path, self.run = Path(directory) / LOG, run
        self.found: dict[str, str] = {}  # key -> prediction
        lines, torn = read_log(self.path)
        kept = [line for line in lines if json.loads(line)["run"] == run]
        for row in map(json.loads, kept):
            self.found.setdefault(row["key"], row["prediction"])
        self.dropped = len(lines) - len(kept)  # of another model, decoding or data
        if self.dropped or torn:
            self._rewrite(kept)
        self.generated = 0  # predictions appended by this process

    def _rewrite(self, lines: list[str]) -> None:
        with atomic_path(self.path) as tmp:
            tmp.write_text("".join(lines))

    def missing(self, samples: Sequence[Sample], keys: dict[str, str]) -> list[Sample]:
        """The samples (``keys``: sample id -> key) that have no stored prediction."""
        return [s for s in samples if keys[s.id] not in self.found]

    def append(self, task: str, rows: list[tuple[str, str, str]]) -> None:
        """One batch's (key, sample id, prediction) rows, on disk when this returns."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a") as f:
            for key, sample_id, prediction in rows:
                row = {"run": self.run, "key": key, "task": task, "id": sample_id, "prediction": prediction}
                f.write(json.dumps(row) + "\n")
                self.found[key] = prediction
            f.flush()
            os.fsync(f.fileno())
        self.generated += len(rows)
