"""Loading per-run result files (``mmcl aggregate``) into a typed, validated form shared by every analysis's
tables and figures, and grouping them into the report's (suite, order, backbone) cells."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mmcl.core.io import read_json
from mmcl.data.families import summaries
from mmcl.metrics.linguistic import harmonic_mean

NAN = float("nan")
JOINT = "joint"  # the single stage name of a joint (multitask) run
Group = tuple[str, str, str]  # (suite, order, backbone): one table, one directory of the report


def to_float(value) -> float:
    """JSON number or null -> float, with null (not applicable) as NaN."""
    return NAN if value is None else float(value)


def mean_or_nan(values: Iterable[float]) -> float:
    """Mean of the defined (non-NaN) values; NaN when none is defined."""
    defined = [v for v in values if not math.isnan(v)]
    return sum(defined) / len(defined) if defined else NAN


@dataclass(frozen=True)
class Run:
    """One run's results: the accuracy matrix of every metric plus its run-level metrics."""

    suite: str
    order: str
    backbone: str
    method: str
    seed: int
    tasks: tuple[str, ...]  # the order's training sequence
    eval_tasks: tuple[str, ...]  # matrix columns; may include tasks never trained
    families: dict[str, str]
    primary_metric: dict[str, str]
    stages: tuple[str, ...]  # task trained at each stage (matrix rows); ("joint",) for a joint run
    matrix: dict[str, np.ndarray]  # metric -> (stage, eval_task) scores, NaN where not applicable
    metrics: dict[str, float]
    # Suites with linguistic measures: the tasks of each (vl, nlu, nlg) and the base model's harmonic
    # mean over them, in primary metrics; both empty for other suites.
    measures: dict[str, tuple[str, ...]] = field(default_factory=dict)
    base_measures: dict[str, float] = field(default_factory=dict)
    # Suites with generation tasks: the evaluation directories holding the generated pictures of the
    # stage-0 model ("stage0") and after the final stage ("final"); empty for other suites.
    generated: dict[str, str] = field(default_factory=dict)
    samples: dict[str, tuple[int, int]] = field(default_factory=dict)  # task -> (scored, of the split's)
    # Per-item forgetting (mmcl.analyses.flips): per task learned before the last stage, its items lost and
    # gained between the stage that learned it and the last, with examples; empty for other runs.
    flips: dict[str, dict] = field(default_factory=dict)
    fingerprint: str | None = None  # what its results depend on (``Params.run_fingerprint``)
    commit: str | None = None  # the last commit of the code that aggregated it (``git_state``'s code_commit)
    environment: dict = field(default_factory=dict)  # machine, threads, libraries (``mmcl.core.provenance``)

    @property
    def group(self) -> Group:
        """The (suite, order, backbone) cell of the grid; one table per group."""
        return (self.suite, self.order, self.backbone)

    @property
    def key(self) -> tuple[str, str, str, str, int]:
        return (*self.group, self.method, self.seed)

    @property
    def is_joint(self) -> bool:
        return self.stages == (JOINT,)

    @property
    def extra_tasks(self) -> tuple[str, ...]:
        """Evaluated tasks that are not in the training sequence (e.g. the LLM's text knowledge)."""
        return tuple(t for t in self.eval_tasks if t not in self.tasks)

    @property
    def report_tasks(self) -> tuple[str, ...]:
        """Table and heatmap columns: the training sequence, then the tasks outside it."""
        return self.tasks + self.extra_tasks

    def tasks_of(self, family: str) -> list[str]:
        return [t for t in self.tasks if self.families.get(t) == family]

    def summarised(self, suffix: str) -> tuple[list[str], str]:
        """The order's tasks that the ``_<suffix>`` run metrics average (``TaskFamily.summary``), and the
        metric they are averaged in."""
        family, summary = summaries()[suffix]
        return self.tasks_of(family), summary.metric

    def score(self, metric: str, stage: int, task: str) -> float:
        """Score of ``task`` in ``metric`` after 0-based ``stage`` (NaN if the metric was not recorded)."""
        if metric not in self.matrix:
            return NAN
        return float(self.matrix[metric][stage, self.eval_tasks.index(task)])

    def final(self, task: str) -> float:
        """The task's primary-metric score after the last stage."""
        return self.score(self.primary_metric[task], len(self.stages) - 1, task)


def parse_run(data: dict, source: str) -> Run:
    """Build a :class:`Run` from a run file's JSON, checking that the matrix shapes match the task lists."""
    eval_tasks = tuple(data["eval_tasks"])
    stages = tuple(data["stages"])
    matrix = {}
    for metric, rows in data["matrix"].items():
        if len(rows) != len(stages) or any(len(row) != len(eval_tasks) for row in rows):
            raise ValueError(
                f"{source}: matrix['{metric}'] must be stages × eval_tasks = "
                f"{len(stages)} × {len(eval_tasks)}, got row lengths {[len(row) for row in rows]}"
            )
        matrix[metric] = np.array([[to_float(v) for v in row] for row in rows], dtype=float).reshape(
            len(stages), len(eval_tasks)
        )
    missing = [t for t in data["tasks"] if t not in eval_tasks]
    if missing:
        raise ValueError(f"{source}: trained tasks {missing} are missing from eval_tasks")
    measures = {name: tuple(names) for name, names in data.get("measures", {}).items()}
    primary = dict(data["primary_metric"])
    base_measures = {
        name: harmonic_mean(to_float(data["zeroshot"][primary[t]][eval_tasks.index(t)]) for t in names)
        for name, names in measures.items()
    }
    return Run(
        suite=str(data["suite"]),
        order=str(data["order"]),
        backbone=str(data["backbone"]),
        method=str(data["method"]),
        seed=int(data["seed"]),
        tasks=tuple(data["tasks"]),
        eval_tasks=eval_tasks,
        families=dict(data["families"]),
        primary_metric=primary,
        stages=stages,
        matrix=matrix,
        metrics={name: to_float(v) for name, v in data["metrics"].items()},
        measures=measures,
        base_measures=base_measures,
        generated=dict(data.get("generated", {})),
        samples={task: (int(n), int(of)) for task, (n, of) in data.get("samples", {}).items()},
        flips=dict(data.get("flips", {})),
        fingerprint=data.get("fingerprint"),
        commit=data.get("commit"),
        environment=dict(data.get("environment", {})),
    )


def load_runs(paths: Sequence[Path]) -> list[Run]:
    """Read run files, sorted by (suite, order, backbone, method, seed) so input order never matters."""
    runs = [parse_run(read_json(path), str(path)) for path in paths]
    seen: dict[tuple, str] = {}
    for run, path in zip(runs, paths, strict=True):
        if run.key in seen:
            raise ValueError(f"{path} and {seen[run.key]} are the same run {run.key}")
        seen[run.key] = str(path)
    return sorted(runs, key=lambda r: r.key)


def in_order(names: Iterable[str], order: Sequence[str] | None) -> list[str]:
    """The distinct names in ``order`` (those present), then any others alphabetically."""
    present = set(names)
    known = [m for m in dict.fromkeys(order or []) if m in present]
    return known + sorted(present - set(known))


def group_runs(runs: Sequence[Run]) -> dict[Group, list[Run]]:
    """Runs by (suite, order, backbone), checking that they agree on what was trained and evaluated."""
    groups: dict[Group, list[Run]] = {}
    for run in runs:
        groups.setdefault(run.group, []).append(run)
    for group, members in groups.items():
        first = members[0]
        for run in members[1:]:
            if (run.tasks, run.eval_tasks) != (first.tasks, first.eval_tasks):
                raise ValueError(
                    f"runs of {'/'.join(group)} disagree on tasks: {first.method} seed {first.seed} has "
                    f"{list(first.eval_tasks)}, {run.method} seed {run.seed} has {list(run.eval_tasks)}"
                )
    return dict(sorted(groups.items()))


def safe_name(name: str) -> str:
    """A name usable as one path component (config keys normally are already)."""
    return re.sub(r"[^\w.+-]", "_", name)


def group_dir(group: Group) -> Path:
    """A group's directory under the report's: ``<suite>/<order>/<backbone>``."""
    return Path(*(safe_name(part) for part in group))
