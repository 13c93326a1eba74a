"""``mmcl report``: per-run result files -> every report under ``reports/``, each analysis (``mmcl.analyses``)
writing its part.

Layout under ``out_dir``::

    results.csv, summary.csv, metrics.json, index.md
    <suite>/<order>/<backbone>/table.{md,csv,tex}
    <suite>/<order>/<backbone>/heatmaps/<method>_seed<seed>.png
    <suite>/<order>/<backbone>/curves/<method>.csv

and for suites with linguistic measures (NLU/NLG text tasks; the continual-LLaVA study, ``linguistic``)::

    <suite>/<order>/<backbone>/linguistic.{md,csv,tex}
    <suite>/<order>/<backbone>/linguistic_stages.png
    <suite>/<order>/nlg_delta_by_backbone.png      (suites with NLG tasks)

and for suites with generation tasks outside the order (MoDE's setting, ``generation``)::

    <suite>/<order>/<backbone>/generation.{md,csv,tex}
    <suite>/<order>/<backbone>/generated.png

and, given ``mmcl gradients`` files (suites with generation tasks; MoDE's Figure 5, ``gradients``)::

    <suite>/<order>/<backbone>/gradient_conflict.png

Each (suite, order, backbone) directory is replaced as a whole, so a method or seed dropped from the
grid leaves no stale heatmap behind; top-level directories of groups no longer built are left alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from mmcl.analyses import ANALYSES
from mmcl.analyses.base import Analysis, ReportContext
from mmcl.analyses.runs import Group, Run, group_dir, group_runs, in_order, load_runs
from mmcl.analyses.tidy import frame_csv, metrics_tree, results_frame, summary_frame
from mmcl.core.io import atomic_path, read_json, write_json, write_text

FOOTER = [
    "",
    "Machine-readable: [results.csv](results.csv) (every matrix cell of every run), "
    "[summary.csv](summary.csv) (run-level metrics: mean, std and 95% interval over seeds), "
    "[metrics.json](metrics.json) (means, for `dvc metrics`), "
    "[environment.json](environment.json) (the machines and libraries the runs were evaluated with).",
]


def analyses() -> list[Analysis]:
    """Every registered analysis, in the order of their index sections."""
    return sorted((ANALYSES.get(name)() for name in ANALYSES.names()), key=lambda analysis: analysis.rank)


def build_reports(
    run_files: list[Path],
    out_dir: Path,
    method_order: list[str] | None = None,
    baselines: dict[str, Path] | None = None,
    backbone_order: list[str] | None = None,
    inputs: dict[str, Sequence[Path]] | None = None,
    compare_with: str | None = None,
) -> dict:
    """Write every report under out_dir (normally `reports/`); return metrics dict (also written).

    ``method_order`` orders table rows and ``metrics.json`` (methods not in it follow alphabetically),
    ``backbone_order`` the backbone axes of figures (the same way); ``baselines`` maps a suite to its
    most-common-predictor scores, shown as a reference row; ``inputs`` maps an analysis to the files it
    reads (``Analysis.report_inputs``: e.g. ``mmcl gradients`` files); ``compare_with`` the method the tables
    test every other against. The returned dict is what
    ``metrics.json`` holds: ``{suite: {order: {backbone: {method: {metric: mean over seeds}}}}}`` with
    undefined values as None.
    """
    if not run_files:
        raise ValueError("build_reports needs at least one run file")
    out_dir = Path(out_dir)
    runs = load_runs(run_files)
    write_text(out_dir / "results.csv", frame_csv(results_frame(runs)))
    summary = summary_frame(runs)
    write_text(out_dir / "summary.csv", frame_csv(summary))
    write_json(out_dir / "environment.json", environments(runs))
    groups = group_runs(runs)
    suites = {suite for suite, _, _ in groups}
    context = ReportContext(
        methods=in_order((run.method for run in runs), method_order),
        compare_with=compare_with,
        backbones=backbone_order,
        baselines={suite: read_json(path) for suite, path in (baselines or {}).items() if suite in suites},
        inputs={name: [Path(p) for p in files] for name, files in (inputs or {}).items()},
        out_dir=Path(out_dir),
    )
    every = analyses()
    applied = {analysis.name: [g for g, members in groups.items() if analysis.applies(members)] for analysis in every}
    for group, members in groups.items():
        # The whole directory is replaced, so a method or seed dropped from the grid leaves nothing stale.
        with atomic_path(out_dir / group_dir(group)) as tmp:
            tmp.mkdir()
            for analysis in every:
                if group in applied[analysis.name]:
                    analysis.write_group(tmp, members, context)
    written = {analysis.name: analysis.write_report(out_dir, groups, context) for analysis in every}
    metrics = metrics_tree(summary, method_order)
    write_json(out_dir / "metrics.json", metrics)
    write_text(out_dir / "index.md", index_markdown(every, applied, written))
    return metrics


def environments(runs: Sequence[Run]) -> dict:
    """The distinct environments of ``runs``, each with the runs (suite/order/backbone/method/seed) it made:
    what ``mmcl compare`` sets side by side."""
    found: list[tuple[dict, list[str]]] = []
    for run in runs:
        name = "/".join(map(str, run.key))
        for environment, names in found:
            if environment == run.environment:
                names.append(name)
                break
        else:
            found.append((run.environment, [name]))
    return {"environments": [{"runs": names, **environment} for environment, names in found]}


def index_markdown(every: list[Analysis], applied: dict[str, list[Group]], written: dict[str, list]) -> str:
    """The page the README points to: each analysis's section (where it applied or wrote something), then
    links to the machine-readable files."""
    lines = ["# mmcl reports"]
    for analysis in every:
        groups, outputs = applied[analysis.name], written[analysis.name]
        if groups or outputs:
            lines += analysis.index_section(groups, outputs)
    return "\n".join(lines + FOOTER) + "\n"
