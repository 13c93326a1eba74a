"""Entry point: per-run result files -> every report under ``reports/``.

Layout under ``out_dir``::

    results.csv, summary.csv, metrics.json, index.md
    <suite>/<order>/<backbone>/table.{md,csv,tex}
    <suite>/<order>/<backbone>/heatmaps/<method>_seed<seed>.png
    <suite>/<order>/<backbone>/curves/<method>.csv

and for suites with linguistic measures (NLU/NLG text tasks; the continual-LLaVA study)::

    <suite>/<order>/<backbone>/linguistic.{md,csv,tex}
    <suite>/<order>/<backbone>/linguistic_stages.png
    <suite>/<order>/nlg_delta_by_backbone.png      (suites with NLG tasks)

and for suites with generation tasks outside the order (MoDE's setting)::

    <suite>/<order>/<backbone>/generation.{md,csv,tex}
    <suite>/<order>/<backbone>/generated.png

and, given ``mmcl gradients`` files (suites with generation tasks; MoDE's Figure 5)::

    <suite>/<order>/<backbone>/gradient_conflict.png

Each (suite, order, backbone) directory is replaced as a whole, so a method or seed dropped from the
grid leaves no stale heatmap behind; top-level directories of groups no longer built are left alone.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from mmcl.io import atomic_path, read_json, write_json, write_text
from mmcl.plan import prefix_key
from mmcl.reports.figures import heatmap_figure, save_png
from mmcl.reports.generation import build_generation_table, has_generation
from mmcl.reports.generation_figures import generated_grid_figure
from mmcl.reports.gradient_figures import gradient_conflict_figure
from mmcl.reports.linguistic import build_linguistic_table
from mmcl.reports.linguistic_figures import nlg_by_backbone_figure, stage_curves_figure
from mmcl.reports.runs import Run, group_runs, in_order, load_runs
from mmcl.reports.tables import MethodTable, build_table, to_csv, to_latex, to_markdown
from mmcl.reports.tidy import curves_frame, metrics_tree, results_frame, summary_frame

Group = tuple[str, str, str]


def safe_name(name: str) -> str:
    """A name usable as one path component (config keys normally are already)."""
    return re.sub(r"[^\w.+-]", "_", name)


def group_dir(group: Group) -> Path:
    return Path(*(safe_name(part) for part in group))


def frame_csv(frame: pd.DataFrame) -> str:
    return frame.to_csv(index=False, lineterminator="\n")


def write_table(directory: Path, stem: str, table: MethodTable) -> None:
    write_text(directory / f"{stem}.md", to_markdown(table))
    write_text(directory / f"{stem}.csv", to_csv(table))
    write_text(directory / f"{stem}.tex", to_latex(table))


def write_group(directory: Path, runs: Sequence[Run], baseline: dict | None, methods: Sequence[str]) -> None:
    """Table files, per-run heatmaps and per-method curves of one (suite, order, backbone).

    ``methods``: every method of the report, in order (rows and figure colours follow it).
    """
    table = build_table(runs, baseline, methods)
    with atomic_path(directory) as tmp:
        tmp.mkdir()
        write_table(tmp, "table", table)
        for run in runs:
            save_png(heatmap_figure(run), tmp / "heatmaps" / f"{safe_name(run.method)}_seed{run.seed}.png")
        for method in in_order((run.method for run in runs), methods):
            sequential = [run for run in runs if run.method == method and not run.is_joint]
            if sequential:
                write_text(tmp / "curves" / f"{safe_name(method)}.csv", frame_csv(curves_frame(sequential)))
        if runs[0].is_linguistic:
            write_table(tmp, "linguistic", build_linguistic_table(runs, methods))
            save_png(stage_curves_figure(runs, methods), tmp / "linguistic_stages.png")
        if has_generation(runs[0]):
            write_table(tmp, "generation", build_generation_table(runs, methods))
            save_png(generated_grid_figure(runs, methods), tmp / "generated.png")


def write_backbone_figures(
    out_dir: Path, groups: dict[Group, list[Run]], methods: Sequence[str], backbone_order: Sequence[str] | None
) -> list[Path]:
    """NLG Δ against backbone, one figure per (suite, order) with NLG tasks; returns their paths in out_dir."""
    by_order: dict[tuple[str, str], list[Run]] = {}
    for (suite, order, _), members in groups.items():
        if "nlg" in members[0].measures:
            by_order.setdefault((suite, order), []).extend(members)
    written = []
    for (suite, order), runs in by_order.items():
        backbones = in_order((run.backbone for run in runs), backbone_order)
        path = Path(safe_name(suite), safe_name(order), "nlg_delta_by_backbone.png")
        save_png(nlg_by_backbone_figure(runs, backbones, methods), out_dir / path)
        written.append(path)
    return written


def write_gradient_figures(
    out_dir: Path, groups: dict[Group, list[Run]], gradient_files: Sequence[Path], methods: Sequence[str]
) -> list[Group]:
    """``gradient_conflict.png`` of each group with gradient files (after its order's last stage), written
    after ``write_group``, which replaces the group's directory; returns those groups."""
    last_stages = {(group[0], group[2], prefix_key(members[0].tasks)): group for group, members in groups.items()}
    found: dict[Group, dict[str, dict]] = {}
    for path in gradient_files:
        data = read_json(path)
        group = last_stages.get((data["suite"], data["backbone"], data["stage"]))
        if group is None:
            raise ValueError(f"{path}: stage '{data['stage']}' is the last stage of no order of this report's runs")
        if data["method"] in found.setdefault(group, {}):
            raise ValueError(f"{path}: a second gradient file of method '{data['method']}' for {'/'.join(group)}")
        found[group][data["method"]] = data
    for group, gradients in found.items():
        save_png(gradient_conflict_figure(gradients, methods), out_dir / group_dir(group) / "gradient_conflict.png")
    return sorted(found)


def gradient_index(groups: Sequence[Group]) -> list[str]:
    figures = [(group_dir(group) / "gradient_conflict.png").as_posix() for group in groups]
    links = ", ".join(f"[{'/'.join(group)}]({figure})" for group, figure in zip(groups, figures, strict=True))
    return [
        "",
        "## Gradient conflict (MoDE, Figure 5)",
        "",
        "After each order's last stage, in one seed, per tensor the method trains: the cosine between the "
        "gradients of the text loss (the last task) and the image-generation loss; negative = a text step raises "
        f"the image loss to first order. {links}.",
    ]


def links_section(title: str, text: str, groups: Sequence[Group], files: dict[str, str]) -> list[str]:
    """An index section: its title and text, then a table linking each group's ``files`` (header -> name)."""
    lines = [
        "",
        f"## {title}",
        "",
        text,
        "",
        f"| Suite | Order | Backbone | {' | '.join(files)} |",
        "|:--|:--|:--|" + ":--|" * len(files),
    ]
    for group in groups:
        base = group_dir(group).as_posix()
        links = " | ".join(f"[{name}]({base}/{name})" for name in files.values())
        lines.append(f"| {' | '.join(group)} | {links} |")
    return lines


def linguistic_index(groups: Sequence[Group], backbone_figures: Sequence[Path]) -> list[str]:
    """The index section of the continual-LLaVA study's tables and figures."""
    lines = links_section(
        "Linguistic forgetting",
        "Suites with NLU/NLG text tasks: per method, the VL score (harmonic mean over the VL tasks) and the "
        "NLU/NLG Δ (base model − after the final stage, in points; positive = forgetting), with the base "
        "model's own scores as a reference row; and the same after every stage (figure).",
        groups,
        {
            "Table": "linguistic.md",
            "CSV": "linguistic.csv",
            "LaTeX": "linguistic.tex",
            "Per stage": "linguistic_stages.png",
        },
    )
    if backbone_figures:
        links = ", ".join(f"[{path.parent.as_posix()}]({path.as_posix()})" for path in backbone_figures)
        lines += ["", f"NLG Δ after the final stage against backbone size, per suite/order: {links}."]
    return lines


def generation_index(groups: Sequence[Group]) -> list[str]:
    """The index section of MoDE's tables and generated-image grids."""
    return links_section(
        "Intra- and inter-modal forgetting",
        "Suites whose stage-0 model generates images: per method, the final understanding accuracy, the "
        "generation score before and after continual training, intra- and inter-modal forgetting and the "
        "trainable parameters; and the same prompts drawn by the stage-0 model and by each method (figure).",
        groups,
        {
            "Table": "generation.md",
            "CSV": "generation.csv",
            "LaTeX": "generation.tex",
            "Generated images": "generated.png",
        },
    )


def index_markdown(
    groups: Sequence[Group],
    linguistic: Sequence[Group] = (),
    backbone_figures: Sequence[Path] = (),
    generation: Sequence[Group] = (),
    gradients: Sequence[Group] = (),
) -> str:
    """The page the README points to: links to every table and to the machine-readable files.

    ``linguistic``: the groups with linguistic tables, ``backbone_figures`` the NLG Δ figures (relative
    paths), ``generation`` the groups with generation tables, ``gradients`` those with a gradient-conflict
    figure.
    """
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
    ]
    if linguistic:
        lines += linguistic_index(linguistic, backbone_figures)
    if generation:
        lines += generation_index(generation)
    if gradients:
        lines += gradient_index(gradients)
    lines += [
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
    backbone_order: list[str] | None = None,
    gradient_files: Sequence[Path] = (),
) -> dict:
    """Write every report under out_dir (normally `reports/`); return metrics dict (also written).

    ``method_order`` orders table rows and ``metrics.json`` (methods not in it follow alphabetically),
    ``backbone_order`` the x axis of the NLG Δ-by-backbone figures (the same way); ``baselines`` maps a
    suite to its most-common-predictor scores, shown as a reference row; ``gradient_files`` (``mmcl
    gradients``, one per method of a group, after its order's last stage) are drawn. The returned dict is what
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
    groups = group_runs(runs)
    suites = {suite for suite, _, _ in groups}
    loaded_baselines = {suite: read_json(path) for suite, path in (baselines or {}).items() if suite in suites}
    methods = in_order((run.method for run in runs), method_order)
    for group, members in groups.items():
        write_group(out_dir / group_dir(group), members, loaded_baselines.get(group[0]), methods)
    linguistic = {group: members for group, members in groups.items() if members[0].is_linguistic}
    backbone_figures = write_backbone_figures(out_dir, linguistic, methods, backbone_order)
    gradients = write_gradient_figures(out_dir, groups, gradient_files, methods)
    metrics = metrics_tree(summary, method_order)
    write_json(out_dir / "metrics.json", metrics)
    generation = [group for group, members in groups.items() if has_generation(members[0])]
    index = index_markdown(list(groups), list(linguistic), backbone_figures, generation, gradients)
    write_text(out_dir / "index.md", index)
    return metrics
