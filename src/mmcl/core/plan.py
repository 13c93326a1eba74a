"""Which training stages a run consists of, and how they are named.

A stage is named by the tasks trained so far (the order's prefix), not by the order's name, so two
orders that share leading tasks share those stages' jobs and checkpoints. This module is shared by
the Snakefile (to build the DAG) and the commands (to know what a stage trains); it imports nothing
heavy. Where each stage's files live: ``mmcl.core.paths``.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

SEPARATOR = "+"


def prefix_key(tasks) -> str:
    return SEPARATOR.join(tasks)


def prefix_tasks(key: str) -> list[str]:
    return key.split(SEPARATOR) if key else []


@dataclass(frozen=True)
class Stage:
    key: str  # directory name of the stage: tasks trained so far, joined
    tasks: tuple[str, ...]  # tasks whose training data this stage uses
    previous: str | None  # key of the stage it starts from (None: the base model)
    seen: tuple[str, ...]  # every task learned once this stage is done


def plan_stages(schedule: str, order: list[str]) -> list[Stage]:
    """Training stages of one run.

    ``sequential``: stage k trains task k, starting from stage k-1.
    ``joint``: one stage trains every task at once from the base model; keyed by the sorted task
    set so that orders with the same tasks share it.
    ``none``: no training (the run is the base model).
    """
    if schedule == "sequential":
        return [
            Stage(prefix_key(order[: k + 1]), (task,), prefix_key(order[:k]) or None, tuple(order[: k + 1]))
            for k, task in enumerate(order)
        ]
    if schedule == "joint":
        tasks = tuple(sorted(order))
        return [Stage(prefix_key(tasks), tasks, None, tasks)]
    if schedule == "none":
        return []
    raise ValueError(f"unknown schedule '{schedule}' (sequential, joint or none)")


def stage_seed(seed: int, key: str) -> int:
    """Seed of one stage: depends on the grid seed and the stage's own key, never on the order's name."""
    return (seed * 1_000_003 + zlib.crc32(key.encode())) % (2**31)


def stage_from_key(schedule: str, key: str) -> Stage:
    """The stage a directory key names, under a method's schedule (the inverse of ``plan_stages``)."""
    tasks = prefix_tasks(key)
    if not tasks:
        raise ValueError("a stage key names at least one task")
    if schedule == "joint":
        return Stage(key, tuple(tasks), None, tuple(tasks))
    if schedule == "sequential":
        return Stage(key, (tasks[-1],), prefix_key(tasks[:-1]) or None, tuple(tasks))
    raise ValueError(f"a '{schedule}' method has no training stages")


def scored_tasks(stage: Stage | None, orders: list[list[str]], evaluated: list[str], cells: str) -> list[str]:
    """The tasks a checkpoint is scored on, in ``evaluated``'s order (the matrix's columns).

    ``cells: all``, the base model (``stage`` None) and a joint stage: every evaluated task. ``needed``,
    for stage k of the ``orders`` that reach it: what the metrics read, the tasks learned so far (the lower
    triangle), the next one (the superdiagonal, forward transfer) and the tasks outside the order (text
    tasks, held-out sets); a run of T tasks scores T(T+1)/2 + T - 1 of its cells, plus the base model's T.
    """
    if cells == "all" or stage is None or len(stage.tasks) > 1:
        return list(evaluated)
    reached = [order for order in orders if tuple(order[: len(stage.seen)]) == stage.seen]
    wanted = {task for order in reached for task in order[: len(stage.seen) + 1]}
    wanted |= {task for order in reached for task in evaluated if task not in order}
    return [task for task in evaluated if task in wanted]
