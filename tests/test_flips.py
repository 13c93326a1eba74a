"""Per-item forgetting on a hand-made pair of prediction files: the counts, the run file's entries and the
report's lists."""

from __future__ import annotations

import json
from pathlib import Path

from mmcl.analyses.base import RunScores
from mmcl.analyses.flips import PerItemForgetting
from mmcl.analyses.flips.report import flips_csv, flips_markdown
from mmcl.analyses.runs import parse_run

GOLD = {"a": "red", "b": "blue", "c": "green", "d": "cube", "e": "ball"}


def predictions(directory: Path, task: str, predicted: dict[str, str]) -> Path:
    (directory / "predictions").mkdir(parents=True)
    rows = [{"id": i, "prediction": p, "answers": [GOLD[i]], "instruction": f"what is {i}?", "media": []}
            for i, p in predicted.items()]  # fmt: skip
    (directory / "predictions" / f"{task}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (directory / "scores.json").write_text("{}")
    return directory / "scores.json"


def run_scores(default_params, tmp_path: Path, name: str, learned: dict, final: dict) -> RunScores:
    suite = default_params.suites["micl-synth"]
    stage_scores = [
        predictions(tmp_path / name / "1", "image_qa", learned),
        predictions(tmp_path / name / "2", "image_qa", final),
    ]
    return RunScores(suite, ["image_qa", "image_cap"], ["image_qa", "image_cap"], "sequential", [], {}, {}, {}, [],
                     [], stage_scores, tmp_path / "base.json", None)  # fmt: skip


def test_items_right_when_learned_and_wrong_at_the_end_are_lost(tmp_path):
    from mmcl.jobs.params import load_params

    params = load_params(Path(__file__).parents[1] / "params.yaml")
    learned = {"a": "red", "b": "Blue.", "c": "grey", "d": "sphere", "e": "ball"}  # a, b, e right (normalised)
    final = {"a": "red", "b": "navy", "c": "green", "d": "cube", "e": "cube"}  # a, c, d right
    metrics, entries = PerItemForgetting().aggregate(run_scores(params, tmp_path, "finetune", learned, final))
    entry = entries["flips"]["image_qa"]
    assert (entry["items"], entry["lost"], entry["gained"]) == (5, ["b", "e"], ["c", "d"])
    assert metrics == {"flips_lost_image_qa": 40.0, "flips_gained_image_qa": 40.0}
    assert entry["examples"]["b"] == {"instruction": "what is b?", "answer": "blue", "learned": "Blue.",
                                      "final": "navy", "media": []}  # fmt: skip
    assert "image_cap" not in entries["flips"], "the last task, and captioning, have no flips"

    kept = {"a": "red", "b": "blue", "c": "green", "d": "cube", "e": "cube"}  # lora loses e only
    _, lora = PerItemForgetting().aggregate(run_scores(params, tmp_path, "lora", learned, kept))
    runs = []
    for method, extra in (("finetune", entries), ("lora", lora)):
        data = {"suite": "micl-synth", "order": "o", "backbone": "tiny", "method": method, "seed": 0,
                "tasks": ["image_qa", "image_cap"], "eval_tasks": ["image_qa", "image_cap"],
                "families": {}, "primary_metric": {}, "stages": ["image_qa", "image_cap"], "matrix": {},
                "metrics": {}, **extra}  # fmt: skip
        runs.append(parse_run(data, method))
    text = flips_markdown(tmp_path, runs, ["finetune", "lora"])
    assert "| finetune (seeds: 1) | 40.0 | 40.0 |" in text and "| lora (seeds: 1) | 20.0 | 40.0 |" in text
    assert "Lost by every method (finetune, lora) in the same seed: 1 item(s)" in text and "`e`" in text
    assert "Kept by lora, lost by finetune: 1 item(s)" in text and "gold **blue**" in text
    rows = flips_csv(runs, ["finetune", "lora"]).splitlines()
    assert len(rows) == 1 + 4 + 3 and rows[1].startswith("finetune,0,image_qa,b,lost,what is b?,blue,Blue.,navy")
