"""The hooks an analysis implements, at the three places a grid's results pass through:

- the DAG (``mmcl.core.paths`` locations): ``aggregate_inputs``, the files a run's aggregation reads beside
  its evaluations, and ``report_inputs``, the files the report reads (``mmcl report --input <name>=<file>``);
- aggregation (``mmcl aggregate``, one run): ``aggregate`` turns the run's ``RunScores`` into run-level
  metrics and entries of the run file;
- the report (``mmcl report``): ``applies`` to a group of runs (one suite, order and backbone),
  ``write_group`` into that group's directory, ``write_report`` what spans groups (or reads the report's
  inputs), and ``index_section`` its part of ``index.md``, at its ``rank``.

Analysis modules stay light at import time (the Snakefile asks them for DAG inputs): tables and figures
are imported inside the report hooks.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from mmcl.analyses.runs import Group, Run, group_dir
from mmcl.config.schema import GridConfig, LMEvalConfig, Params, SuiteConfig


@dataclass(frozen=True)
class RunScores:
    """One run's evaluations, as aggregation reads them: rows after each stage (each an evaluation's
    ``scores.json``, task -> entry), columns ``eval_tasks`` (the order's tasks first)."""

    suite: SuiteConfig
    tasks: list[str]  # the order
    eval_tasks: list[str]  # matrix columns: the order, then every other evaluated task (lm-eval's last)
    schedule: str  # the method's (mmcl.core.plan)
    rows: list[dict]  # scores after each stage (the base model's, repeated, for an untrained run)
    zeroshot: dict  # the base model's scores
    matrix: dict[str, list[list[float | None]]]  # metric -> (stage, eval task); None where not scored
    baseline: dict[str, list[float | None]]  # metric -> the base model's row
    primary: list[list[float]]  # (stage, eval task) in each task's primary metric, NaN where missing
    base: list[float]  # the base model's, likewise
    stage_scores: list[Path]  # the evaluations' files, in training order
    zeroshot_scores: Path
    lm_eval: LMEvalConfig | None  # the backbone's lm-evaluation-harness tasks


@dataclass(frozen=True)
class ReportContext:
    """What every group of a report shares."""

    methods: Sequence[str]  # in the report's order: rows and colours follow it
    compare_with: str | None = None  # the method every table row is tested against (grid.baseline)
    backbones: Sequence[str] | None = None  # the grid's order of backbones (figure axes)
    baselines: dict[str, dict] = field(default_factory=dict)  # suite -> most-common-answer scores
    inputs: dict[str, list[Path]] = field(default_factory=dict)  # analysis name -> its report inputs
    # Where the report goes: a group's files are written into a temporary directory, then moved under it
    # (``group_dir``), so relative links to files outside the report start from there.
    out_dir: Path = Path("reports")


class Analysis:
    name: ClassVar[str]
    rank: ClassVar[int] = 100  # where its index section stands (lower first)

    def aggregate_inputs(self, params: Params, suite: str, backbone: str, stage_scores: list[str]) -> list[str]:
        """Files that one run's aggregation reads beside its evaluations (``stage_scores``)."""
        return []

    def report_inputs(self, params: Params, grid: GridConfig) -> list[str]:
        """Files that the report of ``grid`` reads (given to ``write_report`` as ``context.inputs[name]``)."""
        return []

    def aggregate(self, run: RunScores) -> tuple[dict[str, float], dict]:
        """Run-level metrics and extra entries of the run file (``{}, {}``: nothing to add)."""
        return {}, {}

    def applies(self, runs: Sequence[Run]) -> bool:
        """Whether a group's runs carry what this analysis reports (its ``aggregate`` output)."""
        return False

    def write_group(self, directory: Path, runs: Sequence[Run], context: ReportContext) -> None:
        """Tables and figures of one group, into its directory (being written: the group's files replace it)."""

    def write_report(self, out_dir: Path, groups: dict[Group, list[Run]], context: ReportContext) -> list:
        """What spans groups or reads the report's inputs, written after every group; returns what the
        index section links."""
        return []

    def index_section(self, groups: Sequence[Group], written: list) -> list[str]:
        """Lines of ``index.md`` for the groups it applies to and what ``write_report`` wrote."""
        return []


def links_table(groups: Sequence[Group], files: dict[str, str]) -> list[str]:
    """A Markdown table linking each group's ``files`` (column header -> file name)."""
    lines = [f"| Suite | Order | Backbone | {' | '.join(files)} |", "|:--|:--|:--|" + ":--|" * len(files)]
    for group in groups:
        base = group_dir(group).as_posix()
        links = " | ".join(f"[{name}]({base}/{name})" for name in files.values())
        lines.append(f"| {' | '.join(group)} | {links} |")
    return lines


def links_section(title: str, text: str, groups: Sequence[Group], files: dict[str, str]) -> list[str]:
    """An index section: its title and text, then the table linking each group's ``files``."""
    return ["", f"## {title}", "", text, "", *links_table(groups, files)]
