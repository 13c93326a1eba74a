"""Entry point: per-run result files -> every report under ``reports/``.

Layout under ``out_dir``::

    results.csv, summary.csv, metrics.json, index.md
    <suite>/<order>/<backbone>/table.{md,csv,tex}
    <suite>/<order>/<backbone>/heatmaps/<method>_seed<seed>.png
    <suite>/<order>/<backbone>/curves/<method>.csv

Each (suite, order, backbone) directory is replaced as a whole, so a method or seed dropped from the
grid leaves no stale heatmap behind; top-level directories of groups no longer built are left alone.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from mmcl.io import atomic_path, read_json, write_json, write_text
from mmcl.reports.figures import save_heatmap
from mmcl.reports.runs import Run, group_runs, load_runs, ordered_methods
from mmcl.reports.tables import build_table, to_csv, to_latex, to_markdown
from mmcl.reports.tidy import curves_frame, metrics_tree, results_frame, summary_frame

Group = tuple[str, str, str]


def safe_name(name: str) -> str:
    """A name usable as one path component (config keys normally are already)."""
    return re.sub(r"[^\w.+-]", "_", name)


def group_dir(group: Group) -> Path:
    return Path(*(safe_name(part) for part in group))


def frame_csv(frame: pd.DataFrame) -> str:
    return frame.to_csv(index=False, lineterminator="\n")


def write_group(
    directory: Path, runs: Sequence[Run], baseline: dict | None, method_order: Sequence[str] | None
) -> None:
    """Table files, per-run heatmaps and per-method curves of one (suite, order, backbone)."""
    table = build_table(runs, baseline, method_order)
    with atomic_path(directory) as tmp:
        tmp.mkdir()
        write_text(tmp / "table.md", to_markdown(table))
        write_text(tmp / "table.csv", to_csv(table))
        write_text(tmp / "table.tex", to_latex(table))
        for run in runs:
            save_heatmap(run, tmp / "heatmaps" / f"{safe_name(run.method)}_seed{run.seed}.png")
        for method in ordered_methods((run.method for run in runs), method_order):
            sequential = [run for run in runs if run.method == method and not run.is_joint]
            if sequential:
                write_text(tmp / "curves" / f"{safe_name(method)}.csv", frame_csv(curves_frame(sequential)))


def index_markdown(groups: Sequence[Group]) -> str:
    """The page the README points to: links to every table and to the machine-readable files."""
    lines = [
        "# mmcl reports",
        "",
        "One table per suite / task order / backbone: final per-task scores, averages, forgetting and "
        "backward transfer of every method (each table ends with the definitions of its columns).",
        "",
        "| Suite | Order | Backbone | Table | CSV | LaTeX |",
        "|:--|:--|:--|:--|:--|:--|",
    ]
    for group in groups:
        base = group_dir(group).as_posix()
        lines.append(
            f"| {' | '.join(group)} | [table.md]({base}/table.md) | [table.csv]({base}/table.csv) "
            f"| [table.tex]({base}/table.tex) |"
        )
    lines += [
        "",
        "Each table's directory also holds every run's accuracy-matrix heatmap (`heatmaps/`) and "
        "per-method learning curves (`curves/`).",
        "",
        "Machine-readable: [results.csv](results.csv) (every matrix cell of every run), "
        "[summary.csv](summary.csv) (run-level metrics, mean/std over seeds), "
        "[metrics.json](metrics.json) (means, for `dvc metrics`).",
    ]
    return "\n".join(lines) + "\n"


def build_reports(
    run_files: list[Path],
    out_dir: Path,
    method_order: list[str] | None = None,
    baselines: dict[str, Path] | None = None,
) -> dict:
    """Write every report under out_dir (normally `reports/`); return metrics dict (also written).

    ``method_order`` orders table rows and ``metrics.json`` (methods not in it follow alphabetically);
    ``baselines`` maps a suite to its most-common-predictor scores, shown as a reference row. The
    returned dict is what ``metrics.json`` holds: ``{suite: {order: {backbone: {method: {metric:
    mean over seeds}}}}}`` with undefined values as None.
    """
    if not run_files:
        raise ValueError("build_reports needs at least one run file")
    out_dir = Path(out_dir)
    runs = load_runs(run_files)
    write_text(out_dir / "results.csv", frame_csv(results_frame(runs)))
    summary = summary_frame(runs)
    write_text(out_dir / "summary.csv", frame_csv(summary))
    groups = group_runs(runs)
    suites = {suite for suite, _, _ in groups}
    loaded_baselines = {suite: read_json(path) for suite, path in (baselines or {}).items() if suite in suites}
    for group, members in groups.items():
        write_group(out_dir / group_dir(group), members, loaded_baselines.get(group[0]), method_order)
    metrics = metrics_tree(summary, method_order)
    write_json(out_dir / "metrics.json", metrics)
    write_text(out_dir / "index.md", index_markdown(list(groups)))
    return metrics
