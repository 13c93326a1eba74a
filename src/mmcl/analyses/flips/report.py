"""The per-item forgetting report of one group of runs: ``flips.csv`` (one row per flipped item) and
``flips.md`` (flip rates, the items every method forgets, those a method keeps that finetune loses)."""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Sequence
from pathlib import Path

from mmcl.analyses.runs import Run, in_order
from mmcl.analyses.tables import UNDEFINED

BASELINE = "finetune"  # what "kept by X, lost by finetune" compares with
SHOWN = 3  # examples per list


def flips_csv(runs: Sequence[Run], method_order: Sequence[str]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["method", "seed", "task", "item", "flip", "instruction", "answer", "learned", "final"])
    rank = {method: i for i, method in enumerate(in_order((r.method for r in runs), method_order))}
    for run in sorted(runs, key=lambda r: (rank[r.method], r.seed)):
        for task, entry in run.flips.items():
            for flip in ("lost", "gained"):
                for item in entry[flip]:
                    shown = entry["examples"].get(item, {})
                    texts = [shown.get(key, "") for key in ("instruction", "answer", "learned", "final")]
                    writer.writerow([run.method, run.seed, task, item, flip, *texts])
    return out.getvalue()


def _mean(values: list[float]) -> str:
    return f"{sum(values) / len(values):.1f}" if values else UNDEFINED


def lost_by(runs: Sequence[Run], method: str, task: str) -> dict[int, set[str]]:
    """Seed -> the task's items the method's run of that seed lost."""
    return {r.seed: set(r.flips[task]["lost"]) for r in runs if r.method == method and task in r.flips}


def _examples(directory: Path, suite: str, entry: dict, items: set[str]) -> list[str]:
    return ["", *(_example(directory, suite, entry, item) for item in sorted(items)[:SHOWN])]


def _example(directory: Path, suite: str, entry: dict, item: str) -> str:
    shown = entry["examples"].get(item)
    if shown is None:
        return f"- `{item}`"
    media = [m for m in shown["media"] if Path(m).suffix.lower() in (".png", ".jpg", ".jpeg", ".gif", ".webp")]
    thumbs = "".join(
        f'<img src="{os.path.relpath(Path("data") / suite / m, directory)}" width="48"> ' for m in media
    )  # ``directory``: the group's, relative to the project root (where the report job runs, and data/ is)
    return (
        f"- {thumbs}`{item}`: {shown['instruction']} — gold **{shown['answer']}**; "
        f"when learned: {shown['learned']!r}, at the end: {shown['final']!r}"
    )


def flips_markdown(directory: Path, runs: Sequence[Run], method_order: Sequence[str]) -> str:
    first = runs[0]
    methods = [
        m for m in in_order((r.method for r in runs), method_order) if any(r.method == m and r.flips for r in runs)
    ]
    tasks = list(dict.fromkeys(task for run in runs for task in run.flips))
    lines = [
        f"# Per-item forgetting: {first.suite} · order {first.order} · {first.backbone}",
        "",
        "Each test item of a task scored item by item, between the stage that learned the task and the last stage: "
        "**lost** (right, then wrong) and **gained** (wrong, then right), in % of the task's items, mean over seeds.",
        "",
        "| method | " + " | ".join(f"{t} lost | {t} gained" for t in tasks) + " |",
        "|:--|" + "--:|--:|" * len(tasks),
    ]
    for method in methods:
        cells = []
        for task in tasks:
            mine = [r for r in runs if r.method == method and task in r.flips]
            for flip in ("lost", "gained"):
                cells.append(_mean([100 * len(r.flips[task][flip]) / r.flips[task]["items"] for r in mine]))
        seeds = len({r.seed for r in runs if r.method == method})
        lines.append(f"| {method} (seeds: {seeds}) | " + " | ".join(cells) + " |")
    for task in tasks:
        lines += ["", f"## {task}", ""]
        entry_of = {(r.method, r.seed): r.flips[task] for r in runs if task in r.flips}
        seeds = sorted({seed for _, seed in entry_of})
        by_all = {seed: set.intersection(*[lost_by(runs, m, task).get(seed, set()) for m in methods]) for seed in seeds}
        count = sum(map(len, by_all.values()))
        lines.append(
            f"Lost by every method ({', '.join(methods)}) in the same seed: {count} item(s) over {len(seeds)} seed(s)."
        )
        seed = next((s for s in seeds if by_all[s]), None)
        if seed is not None:
            lines += [
                "",
                *(
                    _example(directory, first.suite, entry_of[(methods[0], seed)], i)
                    for i in sorted(by_all[seed])[:SHOWN]
                ),
            ]
        if BASELINE in methods:
            baseline = lost_by(runs, BASELINE, task)
            for method in methods:
                if method == BASELINE:
                    continue
                kept = {s: baseline[s] - lost for s, lost in lost_by(runs, method, task).items() if s in baseline}
                total = sum(map(len, kept.values()))
                lines += ["", f"Kept by {method}, lost by {BASELINE}: {total} item(s) over {len(kept)} seed(s)."]
                seed = next((s for s in sorted(kept) if kept[s]), None)
                if seed is not None:
                    lines += _examples(directory, first.suite, entry_of[(BASELINE, seed)], kept[seed])
    lines += [
        "",
        "An item is right when its per-item score is 1 (exact match, the gold option, VQA agreement of 3 "
        "annotators). Captioning tasks, scored on the whole corpus (CIDEr), have no per-item flips. "
        "Examples: the prediction of the first seed that has one; `flips.csv` lists every flipped item.",
        "",
    ]
    return "\n".join(lines)
