"""Rehearsal buffers: which of the earlier tasks' training samples a stage replays.

Any method may set ``replay_fraction`` (``MethodConfig``). From the second stage on, the stage's
training set is its own task's samples plus that fraction of the training split of every task
trained before it (the buffer), so the stage's steps draw from both. The buffer is chosen by its own
job (``mmcl replay``: ``mmcl.jobs.replay``, no model) and cached as a small sealed file of sample ids,
``results/<suite>/<backbone>/<method>/seed<seed>/stages/<stage>/replay/replay.json``; it is a function
of (seed, stage) only, and the training job reads it back (``read_replay``).

Per earlier task, the buffer holds ``round(fraction × split size)`` samples (Python's ``round``, to
the nearest integer), at least one, drawn without replacement and listed in split order.
"""

from __future__ import annotations

import random
from pathlib import Path

from mmcl.core.integrity import verify
from mmcl.core.io import read_json
from mmcl.data.records import DataError, Sample, read_jsonl, split_path

BUFFER = "replay.json"


def replay_size(fraction: float, available: int) -> int:
    if fraction <= 0:
        return 0
    # At least one sample per earlier task when the fraction is > 0: a small split (or a small
    # fraction) still rehearses every task instead of silently none.
    return min(available, max(1, round(fraction * available)))


def choose_replay(data_dir: Path, earlier: list[str], fraction: float, seed: int, stage_key: str) -> dict:
    """Task -> ids of its training samples the stage replays, drawn with a generator seeded by (seed, stage)."""
    chosen = {}
    for task in earlier:
        ids = [sample.id for sample in read_jsonl(split_path(data_dir, task, "train"))]
        rng = random.Random(f"replay:{seed}:{stage_key}:{task}")
        picks = sorted(rng.sample(range(len(ids)), replay_size(fraction, len(ids))))
        chosen[task] = [ids[i] for i in picks]
    return chosen


def read_replay(directory: Path, data_dir: Path) -> list[Sample]:
    """The samples of a buffer written by ``mmcl replay`` (its seal verified first)."""
    directory = Path(directory)
    verify(directory)
    samples = []
    for task, ids in read_json(directory / BUFFER)["ids"].items():
        path = split_path(data_dir, task, "train")
        by_id = {sample.id: sample for sample in read_jsonl(path)}
        if missing := [i for i in ids if i not in by_id]:
            raise DataError(
                f"{directory / BUFFER}: sample '{missing[0]}' is not in {path}: the data changed after the buffer "
                f"was built; delete {directory} and re-run the workflow to rebuild it"
            )
        samples += [by_id[i] for i in ids]
    return samples
