"""Per-item forgetting: for each task of a sequential run learned before its last stage and scored item by
item (QA, multiple choice), the test items right after the stage that learned it and wrong after the
last ("lost"), and the reverse ("gained"). The report's ``flips.md`` gives the flip rates per task and
method (mean over seeds), the items every method forgets, those a method keeps and finetune loses, with
examples; ``flips.csv`` lists every flipped item."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from mmcl.analyses import ANALYSES
from mmcl.analyses.base import Analysis, ReportContext, RunScores, links_section
from mmcl.analyses.runs import Group, Run, group_dir
from mmcl.data.families import suite_families
from mmcl.metrics.flips import flips

FILES = {"Flips": "flips.md", "CSV": "flips.csv"}
EXAMPLES = 200  # flipped items per task whose text a run file keeps (for the report's examples)


def read_predictions(eval_dir: Path, task: str) -> dict[str, dict]:
    path = eval_dir / "predictions" / f"{task}.jsonl"
    return {row["id"]: row for row in map(json.loads, path.read_text().splitlines())}


@ANALYSES.register("flips")
class PerItemForgetting(Analysis):
    rank = 15

    def aggregate(self, run: RunScores):
        if run.schedule != "sequential" or len(run.tasks) < 2:
            return {}, {}
        families = suite_families(run.suite)
        final_dir = run.stage_scores[-1].parent
        metrics, entries = {}, {}
        for stage, task in enumerate(run.tasks[:-1]):
            learned_dir = run.stage_scores[stage].parent
            if not families[task].per_item or not (learned_dir / "predictions" / f"{task}.jsonl").exists():
                continue  # scored on the corpus, or an evaluation that kept no predictions (made by hand)
            learned = read_predictions(learned_dir, task)
            final = read_predictions(final_dir, task)
            found = flips(
                {i: row["prediction"] for i, row in learned.items()},
                {i: row["prediction"] for i, row in final.items()},
                {i: row["answers"] for i, row in final.items()},
                families[task].item_score,
            )
            metrics[f"flips_lost_{task}"] = found.lost_rate
            metrics[f"flips_gained_{task}"] = found.gained_rate
            shown = [*found.lost, *found.gained][:EXAMPLES]
            examples = {
                i: {
                    "instruction": final[i].get("instruction", ""),
                    "answer": final[i]["answers"][0],
                    "learned": learned[i]["prediction"],
                    "final": final[i]["prediction"],
                    "media": final[i].get("media", []),
                }
                for i in shown
            }
            entries[task] = {"items": found.items, "lost": list(found.lost), "gained": list(found.gained)}
            entries[task]["examples"] = examples
        return metrics, ({"flips": entries} if entries else {})

    def applies(self, runs: Sequence[Run]) -> bool:
        return any(run.flips for run in runs)

    def write_group(self, directory: Path, runs: Sequence[Run], context: ReportContext) -> None:
        from mmcl.analyses.flips.report import flips_csv, flips_markdown

        (directory / "flips.csv").write_text(flips_csv(runs, context.methods))
        final = context.out_dir / group_dir(runs[0].group)  # where thumbnails' relative links start
        (directory / "flips.md").write_text(flips_markdown(final, runs, context.methods))

    def index_section(self, groups: Sequence[Group], written: list) -> list[str]:
        text = (
            "Per test item, for the QA and multiple-choice tasks learned before the last stage: the items a run "
            "answered right when it learned the task and wrong at the end, and the reverse; the items every "
            "method forgets, and those a method keeps that finetune loses, with examples."
        )
        return links_section("Per-item forgetting", text, groups, FILES)
