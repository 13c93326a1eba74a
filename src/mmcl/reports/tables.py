"""The per-(suite, order, backbone) results table: one model, rendered as Markdown, CSV and LaTeX."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

from mmcl.reports.runs import CAPTIONING, NAN, QA, Run, in_order
from mmcl.reports.tidy import BASELINE, Stat, seed_stat

METRIC_LABELS = {"accuracy": "Acc", "cider": "CIDEr", "bleu4": "BLEU-4", "rouge_l": "ROUGE-L"}
FAMILY_METRIC = {QA: "accuracy", CAPTIONING: "cider"}  # what the *_acc / *_cider averages are taken over
DAGGER = "†"
UNDEFINED = "–"
REFERENCE_LABEL = "most common (reference)"
CSV_DECIMALS = 4

TASK_LEGEND = "score on the task after the final stage, in its primary metric (Acc = accuracy in %, CIDEr ×100)."
EXTRA_LEGEND = (
    "not in the training sequence: evaluated after every stage to track knowledge the base model had "
    "before continual training."
)
JOINT_LEGEND = (
    "multitask training on all tasks at once (a single stage), so only final scores are defined; "
    "forgetting, BWT and Learned are not."
)
REFERENCE_LEGEND = (
    "predicts the most common training answer / caption; a fixed predictor, so Learned equals its final "
    "score and forgetting/BWT do not apply."
)


def _forgetting(family: str, metric: str) -> str:
    return (
        f"mean over the order's {family} tasks except the last trained of (max {metric} at an earlier stage "
        f"− final {metric}); higher = more forgotten."
    )


def _bwt(family: str, metric: str) -> str:
    return (
        f"backward transfer: mean over the order's {family} tasks except the last trained of (final {metric} "
        f"− {metric} right after learning the task); negative = forgetting."
    )


REDUCTION = "Forgetting vs finetune (%)"
REDUCTION_LEGEND = (
    "100 × (F_finetune − F) / F_finetune with F the Forgetting column's mean: how much less the method forgets "
    "than naive fine-tuning (negative: more)."
)


# (header, run-level metric, family whose mean reference score fills the reference row, definition).
# The reference predictor is fixed, so its score "right after learning" is its final score, and
# forgetting/BWT do not apply to it (family None).
SUMMARY_COLUMNS: tuple[tuple[str, str, str | None, str], ...] = (
    ("Avg CIDEr", "last_cider", CAPTIONING, "mean final CIDEr over the order's captioning tasks."),
    ("Avg Acc", "last_acc", QA, "mean final accuracy over the order's QA tasks."),
    ("Forgetting Acc", "forgetting_acc", None, _forgetting("QA", "accuracy")),
    ("Forgetting CIDEr", "forgetting_cider", None, _forgetting("captioning", "CIDEr")),
    (
        "Forgetting",
        "forgetting",
        None,
        "average forgetting over every task of the order except the last trained, each in its primary "
        "metric (accuracy points, CIDEr ×100).",
    ),
    ("BWT Acc", "bwt_acc", None, _bwt("QA", "accuracy")),
    ("BWT CIDEr", "bwt_cider", None, _bwt("captioning", "CIDEr")),
    (
        "Learned Acc",
        "learn_acc",
        QA,
        "mean accuracy of each QA task right after the stage that trained it (plasticity).",
    ),
)


@dataclass(frozen=True)
class TableRow:
    label: str
    cells: tuple[Stat, ...]
    seeds: tuple[int, ...]  # empty for the reference row


@dataclass(frozen=True)
class MethodTable:
    """Final scores of every method of one (suite, order, backbone), plus what the columns mean."""

    suite: str
    order: str
    backbone: str
    tasks: tuple[str, ...]
    headers: tuple[str, ...]
    rows: tuple[TableRow, ...]
    legend: tuple[tuple[str, str], ...]  # (term, definition)
    # A table beside the main one names itself: heading/caption opening, and LaTeX label suffix.
    title: str | None = None
    label: str | None = None

    @property
    def multi_seed(self) -> bool:
        return any(len(row.seeds) > 1 for row in self.rows)

    @property
    def has_extra_tasks(self) -> bool:
        return any(DAGGER in header for header in self.headers)


def task_header(run: Run, task: str, sep: str = " ") -> str:
    """``image_cap (CIDEr)``; tasks outside the training sequence get a dagger: ``text_qa† (Acc)``."""
    metric = run.primary_metric[task]
    mark = "" if task in run.tasks else DAGGER
    return f"{task}{mark}{sep}({METRIC_LABELS.get(metric, metric)})"


def _strict_mean(values: list[float]) -> float:
    """Mean, or NaN when there is no value or any is undefined: a partial average would mislead."""
    return sum(values) / len(values) if values and not any(math.isnan(v) for v in values) else NAN


def _reference_row(run: Run, baseline: dict) -> TableRow:
    """The most-common-answer predictor's scores, averaged the way the run-level metrics are."""

    def score(task: str, metric: str) -> float:
        value = baseline.get(task, {}).get("metrics", {}).get(metric)
        return NAN if value is None else float(value)

    cells = [score(task, run.primary_metric[task]) for task in run.report_tasks]
    for _, _, family, _ in SUMMARY_COLUMNS:
        family_scores = [score(t, FAMILY_METRIC[family]) for t in run.tasks_of(family)] if family else []
        cells.append(_strict_mean(family_scores))
    return fixed_row(REFERENCE_LABEL, cells)


def fixed_row(label: str, values: Sequence[float]) -> TableRow:
    """A row of single values that no seed produced (a reference predictor, the base model)."""
    return TableRow(label, tuple(Stat(v, NAN, 0 if math.isnan(v) else 1) for v in values), ())


def joint_trained(runs: Sequence[Run], methods: Sequence[str]) -> list[str]:
    """The methods among ``methods`` whose runs trained every task in one stage (their legend differs)."""
    return [m for m in methods if any(run.is_joint for run in runs if run.method == m)]


def _method_row(method: str, runs: Sequence[Run]) -> TableRow:
    first = runs[0]
    cells = [seed_stat([run.final(task) for run in runs]) for task in first.report_tasks]
    cells += [seed_stat([run.metrics.get(metric, NAN) for run in runs]) for _, metric, _, _ in SUMMARY_COLUMNS]
    return TableRow(method, tuple(cells), tuple(run.seed for run in runs))


def _with_reduction(rows: list[TableRow], forgetting: int) -> list[TableRow]:
    """Each method row gains its forgetting reduction relative to the ``finetune`` row (NaN without one)."""
    base = next((row.cells[forgetting].mean for row in rows if row.label == BASELINE), NAN)
    extended = []
    for row in rows:
        ours = row.cells[forgetting].mean
        value = 100 * (base - ours) / base if row.seeds and row.label != BASELINE and base > 0 else NAN
        extended.append(TableRow(row.label, (*row.cells, Stat(value, NAN, len(row.seeds))), row.seeds))
    return extended


def _legend(run: Run, kept: list[str], joint_methods: list[str], with_reference: bool) -> list[tuple[str, str]]:
    """Definitions of the columns (and special rows) that the table actually shows."""
    legend = [("task (metric)", TASK_LEGEND)]
    if run.extra_tasks:
        legend.append((DAGGER, EXTRA_LEGEND))
    legend += [(header, text) for header, _, _, text in SUMMARY_COLUMNS if header in kept]
    if REDUCTION in kept:
        legend.append((REDUCTION, REDUCTION_LEGEND))
    legend.append(("mean ± std", f"over seeds (sample std, ddof=1); {UNDEFINED} = undefined."))
    if joint_methods:
        legend.append((", ".join(joint_methods), JOINT_LEGEND))
    if with_reference:
        legend.append((REFERENCE_LABEL, REFERENCE_LEGEND))
    return legend


def build_table(runs: Sequence[Run], baseline: dict | None, method_order: Sequence[str] | None) -> MethodTable:
    """Rows = methods in ``method_order`` (then the reference row); columns = tasks, then summaries.

    Summary columns undefined in every row (e.g. CIDEr ones for an order without captioning) are dropped.
    """
    first = runs[0]
    methods = in_order((run.method for run in runs), method_order)
    rows = [_method_row(m, [run for run in runs if run.method == m]) for m in methods]
    joint_methods = joint_trained(runs, methods)
    if baseline is not None:
        rows.append(_reference_row(first, baseline))
    headers = [task_header(first, task) for task in first.report_tasks]
    headers += [header for header, _, _, _ in SUMMARY_COLUMNS] + [REDUCTION]
    rows = _with_reduction(rows, headers.index("Forgetting"))
    kept = [
        i
        for i, header in enumerate(headers)
        if i < len(first.report_tasks) or any(not math.isnan(row.cells[i].mean) for row in rows)
    ]
    rows = [TableRow(row.label, tuple(row.cells[i] for i in kept), row.seeds) for row in rows]
    kept_headers = [headers[i] for i in kept]
    return MethodTable(
        suite=first.suite,
        order=first.order,
        backbone=first.backbone,
        tasks=first.tasks,
        headers=tuple(kept_headers),
        rows=tuple(rows),
        legend=tuple(_legend(first, kept_headers, joint_methods, baseline is not None)),
    )


def _number(value: float) -> str:
    text = f"{value:.1f}"
    return "0.0" if text == "-0.0" else text


def format_stat(stat: Stat, plus_minus: str = " ± ", undefined: str = UNDEFINED) -> str:
    """``55.1 ± 2.3`` over several seeds, ``55.1`` for one, ``undefined`` when there is no value."""
    if math.isnan(stat.mean):
        return undefined
    if math.isnan(stat.std):
        return _number(stat.mean)
    return f"{_number(stat.mean)}{plus_minus}{_number(stat.std)}"


def _seeds_note(table: MethodTable) -> tuple[str, str]:
    """(short count for the heading, sentence with the seeds used)."""
    method_rows = [row for row in table.rows if row.seeds]
    counts = {len(row.seeds) for row in method_rows}
    if len(counts) == 1:
        n = counts.pop()
        seeds = sorted({s for row in method_rows for s in row.seeds})
        return f"{n} seed{'s' if n > 1 else ''}", f"Seeds: {', '.join(map(str, seeds))} per method."
    per_method = ", ".join(f"{row.label} {len(row.seeds)}" for row in method_rows)
    return f"{min(counts)}–{max(counts)} seeds", f"Seeds per method: {per_method}."


def to_markdown(table: MethodTable) -> str:
    """Heading (suite, order and its sequence, backbone, seeds), the table, then the column legend."""
    count, seeds = _seeds_note(table)
    cells = "mean ± std over seeds" if table.multi_seed else "single-seed values"
    frame = pd.DataFrame(
        [[row.label, *(format_stat(c) for c in row.cells)] for row in table.rows],
        columns=["Method", *table.headers],
    )
    body = frame.to_markdown(index=False, disable_numparse=True, colalign=("left", *["right"] * len(table.headers)))
    legend = "\n".join(f"- **{term}**: {text}" for term, text in table.legend)
    title = f"{table.title} · " if table.title else ""
    return (
        f"# {title}{table.suite} · order {table.order} · backbone {table.backbone} · {count}\n\n"
        f"Task sequence ({table.order}): {' → '.join(table.tasks)}. {seeds} Cells: {cells}.\n\n"
        f"{body}\n\n"
        f"Columns:\n\n{legend}\n"
    )


def to_csv(table: MethodTable) -> str:
    """One row per method; ``<column> mean`` / ``<column> std`` when any method has several seeds."""
    columns: dict[str, list] = {"method": [row.label for row in table.rows]}
    columns["n_seeds"] = pd.array([len(row.seeds) if row.seeds else None for row in table.rows], dtype="Int64")
    for i, header in enumerate(table.headers):
        means = [round(row.cells[i].mean, CSV_DECIMALS) for row in table.rows]
        if table.multi_seed:
            columns[f"{header} mean"] = means
            columns[f"{header} std"] = [round(row.cells[i].std, CSV_DECIMALS) for row in table.rows]
        else:
            columns[header] = means
    return pd.DataFrame(columns).to_csv(index=False, lineterminator="\n")


_TEX_SPECIALS = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    UNDEFINED: "--",
    "Δ": r"$\Delta$",
}


def tex_escape(text: str) -> str:
    """Escape LaTeX specials (``image_cap`` -> ``image\\_cap``) and typeset the not-trained dagger."""
    return "".join(_TEX_SPECIALS.get(c, c) for c in text).replace(DAGGER, r"$^\dagger$")


def to_latex(table: MethodTable) -> str:
    """A booktabs ``table`` (needs ``\\usepackage{booktabs}``); the reference row sits below a midrule."""
    count, _ = _seeds_note(table)
    sequence = " $\\rightarrow$ ".join(tex_escape(t) for t in table.tasks)
    title = table.title or "Final scores"
    caption = tex_escape(f"{title}: suite {table.suite}, order {table.order}") + f" ({sequence}), "
    caption += tex_escape(f"backbone {table.backbone}, {count}")
    if table.multi_seed:
        caption += "; mean $\\pm$ std over seeds"
    caption += f". {tex_escape(DAGGER)} Not in the training sequence." if table.has_extra_tasks else "."
    label = f"-{table.label}" if table.label else ""
    lines = [
        "% Generated by mmcl.reports; needs \\usepackage{booktabs}.",
        "\\begin{table}[t]",
        "\\centering",
        f"\\caption{{{caption}}}",
        f"\\label{{tab:{table.suite}-{table.order}-{table.backbone}{label}}}",
        f"\\begin{{tabular}}{{l{'r' * len(table.headers)}}}",
        "\\toprule",
        " & ".join(tex_escape(h) for h in ["Method", *table.headers]) + " \\\\",
        "\\midrule",
    ]
    for row in table.rows:
        if not row.seeds:
            lines.append("\\midrule")
        cells = [format_stat(c, plus_minus=" $\\pm$ ", undefined="--") for c in row.cells]
        lines.append(" & ".join([tex_escape(row.label), *cells]) + " \\\\")
    lines += ["\\bottomrule", "\\end{tabular}", "\\end{table}"]
    return "\n".join(lines) + "\n"
