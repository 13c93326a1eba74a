"""What every analysis's tables share: one model (``MethodTable``: rows of seed statistics under headers,
and the legend of its columns) rendered as Markdown, CSV and LaTeX."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from mmcl.analyses.runs import NAN, Run
from mmcl.analyses.tidy import ITEMS_INTERVAL, SEEDS_INTERVAL, Stat
from mmcl.core.io import write_text
from mmcl.metrics.statistics import ALPHA, paired_t_test

METRIC_LABELS = {"accuracy": "Acc", "cider": "CIDEr", "bleu4": "BLEU-4", "rouge_l": "ROUGE-L"}
DAGGER = "†"
UNDEFINED = "–"
CSV_DECIMALS = 4
SIGNIFICANT = "*"
NOT_SIGNIFICANT = "≈"


@dataclass(frozen=True)
class TableRow:
    label: str
    cells: tuple[Stat, ...]
    seeds: tuple[int, ...]  # empty for the reference row
    # Per cell: the paired test's p-value against the table's baseline row (NaN: not compared).
    p_values: tuple[float, ...] = ()

    def mark(self, column: int) -> str:
        """`*` where the difference from the baseline is significant at ALPHA, `≈` where it is not."""
        p = self.p_values[column] if self.p_values else NAN
        return "" if math.isnan(p) else SIGNIFICANT if p < ALPHA else NOT_SIGNIFICANT


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
    baseline: str | None = None  # the row the others are compared with (``compared``)

    @classmethod
    def of(
        cls,
        first: Run,
        headers,
        rows,
        legend,
        title: str | None = None,
        label: str | None = None,
        baseline: str | None = None,
    ) -> MethodTable:
        """The table of ``first``'s (suite, order, backbone)."""
        return cls(
            suite=first.suite,
            order=first.order,
            backbone=first.backbone,
            tasks=first.tasks,
            headers=tuple(headers),
            rows=tuple(rows),
            legend=tuple(legend),
            title=title,
            label=label,
            baseline=baseline,
        )

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


def fixed_row(label: str, values: Sequence[float]) -> TableRow:
    """A row of single values that no seed produced (a reference predictor, the base model)."""
    return TableRow(label, tuple(Stat(v, NAN, 0 if math.isnan(v) else 1) for v in values), ())


def joint_trained(runs: Sequence[Run], methods: Sequence[str]) -> list[str]:
    """The methods among ``methods`` whose runs trained every task in one stage (their legend differs)."""
    return [m for m in methods if any(run.is_joint for run in runs if run.method == m)]


def method_rows(
    runs: Sequence[Run], methods: Sequence[str], cells: Callable[[list[Run]], list[Stat]]
) -> list[TableRow]:
    """One row per method of ``methods`` (each has runs here), its cells computed from its runs (one per seed)."""
    rows = []
    for method in methods:
        members = [run for run in runs if run.method == method]
        rows.append(TableRow(method, tuple(cells(members)), tuple(run.seed for run in members)))
    return rows


def compared(rows: Sequence[TableRow], baseline: str | None, columns: Sequence[int]) -> list[TableRow]:
    """``rows`` with the p-value of each of ``columns`` against the ``baseline`` row: a paired t-test over the
    seeds both have the cell defined for (NaN with fewer than two, and for the baseline and fixed rows)."""
    reference = next((row for row in rows if row.label == baseline and row.seeds), None)
    if reference is None:
        return list(rows)
    result = []
    for row in rows:
        p_values = [NAN] * len(row.cells)
        if row.seeds and row is not reference:
            for column in columns:
                theirs = dict(zip(reference.seeds, reference.cells[column].values, strict=True))
                pairs = [
                    (ours, theirs[seed])
                    for seed, ours in zip(row.seeds, row.cells[column].values, strict=True)
                    if seed in theirs and not math.isnan(ours) and not math.isnan(theirs[seed])
                ]
                p_values[column] = paired_t_test(*zip(*pairs, strict=True)) if len(pairs) > 1 else NAN
        result.append(TableRow(row.label, row.cells, row.seeds, tuple(p_values)))
    return result


def uncertainty_legend(rows: Sequence[TableRow], baseline: str | None) -> list[tuple[str, str]]:
    """What the table's intervals and marks are: entries only for the kinds its cells show."""
    kinds = {cell.interval for row in rows for cell in row.cells}
    legend = []
    if SEEDS_INTERVAL in kinds:
        legend.append(
            (
                "mean [low, high]",
                "mean over the seeds and its 95% confidence interval, Student t over the seed means "
                "(mean ± t₀.₉₇₅,ₙ₋₁ · s/√n, n seeds); it covers the spread of training, not only of the test items.",
            )
        )
    if ITEMS_INTERVAL in kinds:
        legend.append(
            (
                "single seed [low, high]",
                "an accuracy cell of one seed carries the 95% Wilson interval over its test items: the test set's "
                "sampling error alone, not the seed's; other single-seed cells have no interval.",
            )
        )
    if any(row.p_values for row in rows):
        legend.append(
            (
                f"`{SIGNIFICANT}` / `{NOT_SIGNIFICANT}`",
                f"paired t-test against {baseline} over the seeds both have (same seed: same data order and "
                f"initialisation): {SIGNIFICANT} differs at p < {ALPHA}, {NOT_SIGNIFICANT} does not; no mark "
                "with fewer than two paired seeds.",
            )
        )
    legend.append((UNDEFINED, "undefined."))
    return legend


def _number(value: float) -> str:
    text = f"{value:.1f}"
    return "0.0" if text == "-0.0" else text


def format_stat(stat: Stat, mark: str = "", undefined: str = UNDEFINED) -> str:
    """``55.1 [52.0, 58.2]`` with an interval, ``55.1`` without, ``undefined`` when there is no value;
    then the comparison's ``mark``."""
    if math.isnan(stat.mean):
        return undefined
    text = _number(stat.mean)
    if not math.isnan(stat.low):
        text += f" [{_number(stat.low)}, {_number(stat.high)}]"
    return f"{text} {mark}" if mark else text


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
    cells = "mean [95% interval] over seeds" if table.multi_seed else "single-seed values"
    frame = pd.DataFrame(
        [[row.label, *(format_stat(c, row.mark(i)) for i, c in enumerate(row.cells))] for row in table.rows],
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
    """One row per method: per column its ``mean``, ``std``, 95% ``ci_low``/``ci_high`` and the interval's kind,
    and ``p vs <baseline>`` where the column is compared."""
    columns: dict[str, list] = {"method": [row.label for row in table.rows]}
    columns["n_seeds"] = pd.array([len(row.seeds) if row.seeds else None for row in table.rows], dtype="Int64")
    compared_columns = {i for row in table.rows for i, p in enumerate(row.p_values) if not math.isnan(p)}
    for i, header in enumerate(table.headers):
        for part, name in (("mean", "mean"), ("std", "std"), ("low", "ci_low"), ("high", "ci_high")):
            columns[f"{header} {name}"] = [round(getattr(row.cells[i], part), CSV_DECIMALS) for row in table.rows]
        columns[f"{header} interval"] = [row.cells[i].interval for row in table.rows]
        if i in compared_columns:
            p_values = [row.p_values[i] if row.p_values else NAN for row in table.rows]
            columns[f"{header} p vs {table.baseline}"] = [round(p, CSV_DECIMALS) for p in p_values]
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
    NOT_SIGNIFICANT: r"$\approx$",
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
        caption += "; mean [95\\% interval] over seeds"
    caption += f". {tex_escape(DAGGER)} Not in the training sequence." if table.has_extra_tasks else "."
    label = f"-{table.label}" if table.label else ""
    lines = [  # the first line names the package's report writer as it always has: committed tables keep their bytes
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
        cells = [tex_escape(format_stat(c, row.mark(i))) for i, c in enumerate(row.cells)]
        lines.append(" & ".join([tex_escape(row.label), *cells]) + " \\\\")
    lines += ["\\bottomrule", "\\end{tabular}", "\\end{table}"]
    return "\n".join(lines) + "\n"


def write_table(directory: Path, stem: str, table: MethodTable) -> None:
    """``<stem>.md``, ``<stem>.csv`` and ``<stem>.tex`` of ``table``."""
    write_text(directory / f"{stem}.md", to_markdown(table))
    write_text(directory / f"{stem}.csv", to_csv(table))
    write_text(directory / f"{stem}.tex", to_latex(table))
