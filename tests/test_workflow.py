"""The workflow end to end: planning (dry runs), lint, and a small grid through `dvc repro`."""

from __future__ import annotations

import copy
import csv
import itertools
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

BIN = str(Path(sys.executable).parent)  # mmcl, snakemake and dvc of this environment
ENV = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}


def run(args, cwd, check=True):
    result = subprocess.run(args, cwd=cwd, env=ENV, capture_output=True, text=True)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result


def planned_jobs(repo_root, params_path) -> list[str]:
    out = run([f"{BIN}/snakemake", "-n", "--config", f"params={params_path}"], repo_root).stdout
    return [line.split("output: ", 1)[1] for line in out.splitlines() if line.strip().startswith("output: ")]


def test_orders_sharing_a_first_task_share_its_stage(repo_root, params_file):
    def edit(params):
        params["presets"] = {}
        params["suites"]["micl-synth"]["orders"] = {
            "a": ["image_cap", "image_qa", "audio_cap"],
            "b": ["image_cap", "audio_cap", "image_qa"],
        }
        params["grid"].update(orders=["a", "b"], methods=["finetune", "lora", "joint"])

    outputs = planned_jobs(repo_root, params_file(edit))
    for method in ("finetune", "lora"):
        first = f"results/micl-synth/tiny/{method}/seed0/stages/image_cap/checkpoint"
        assert outputs.count(first) == 1, f"{method}: the shared first stage must be planned once"
        stages = [
            o for o in outputs if o.startswith(f"results/micl-synth/tiny/{method}/") and o.endswith("/checkpoint")
        ]
        assert len(stages) == 5  # image_cap shared, then two stages per order
    joint = [o for o in outputs if "/joint/" in o and o.endswith("/checkpoint")]
    assert joint == ["results/micl-synth/tiny/joint/seed0/stages/audio_cap+image_cap+image_qa/checkpoint"]
    assert not [o for o in outputs if "aligned" in o], "micl-synth has no alignment stage"


def test_one_alignment_per_backbone_is_where_every_run_starts(repo_root, params_file):
    def edit(params):
        params["presets"]["llava"].update(methods=["finetune", "msgm"], backbones=["tiny-s", "tiny-l"], seeds=[0, 1])

    config = [f"params={params_file(edit)}", "preset=llava"]
    plan = run([f"{BIN}/snakemake", "-n", "-p", "--config", *config], repo_root).stdout
    outputs = [line.split("output: ", 1)[1] for line in plan.splitlines() if line.strip().startswith("output: ")]
    aligned = {b: f"results/llava-synth/{b}/aligned/checkpoint" for b in ("tiny-s", "tiny-l")}
    assert sorted(o for o in outputs if "aligned" in o) == sorted(aligned.values())
    commands = [line.strip() for line in plan.splitlines() if " mmcl " in line]
    for backbone, checkpoint in aligned.items():
        base = f"results/llava-synth/{backbone}/base/checkpoint"
        (align,) = [c for c in commands if " align " in c and f"--backbone {backbone} " in c]
        assert f"--base {base} " in align and f"--out {checkpoint} " in align
        assert f"--features results/llava-synth/{backbone}/features " in align  # the cached encoder outputs
        mine = [c for c in commands if f"/{backbone}/" in c]
        trained = [c for c in mine if " train-stage " in c]
        predicted = [c for c in mine if " predict " in c and "--method" in c]  # one job per method and seed
        assert len(trained) == 2 * 2 * 4 and len(predicted) == 2 * 2
        assert all(f"--base {checkpoint} " in c for c in trained + predicted)
        assert all(c.count("/checkpoint=") == 4 for c in predicted), "each job predicts its 4 stages"
        first = [c for c in mine if " train-stage " in c and "--stage instruct " in c]
        assert len(first) == 4 and not [c for c in first if "--prev" in c], "each method and seed starts there"
        # the base model's own evaluation (the linguistic reference) stays the base's
        assert [c for c in mine if " predict " in c and f"--base {base} " in c and f"--target {base}=" in c]


def test_lm_eval_jobs_run_beside_the_evaluations_of_backbones_that_ask_for_them(repo_root, params_file):
    def edit(params):
        grid = {"suite": "llava-synth", "orders": ["ivor"], "methods": ["finetune", "zeroshot"], "seeds": [0]}
        params["grid"] = grid | {"backbones": ["tiny", "llava-pythia-160m"]}
        params["train"]["task_steps"] = {}

    outputs = planned_jobs(repo_root, params_file(edit))
    evaluations = [o for o in outputs if o.endswith("/eval/scores.json")]
    lm_eval = [o for o in outputs if o.endswith("/lm_eval/scores.json")]
    real = [o for o in evaluations if "/llava-pythia-160m/" in o]
    assert len(real) == 5 and len(evaluations) == 10, "the base model and 4 stages, of each backbone"
    assert sorted(lm_eval) == sorted(o.replace("/eval/", "/lm_eval/") for o in real), "not for tiny"
    assert not [o for o in planned_jobs(repo_root, params_file()) if "lm_eval" in o], "nor in the default grid"


def test_lint_clean(repo_root):
    lint = run([f"{BIN}/snakemake", "--lint"], repo_root)
    assert "good condition" in lint.stdout + lint.stderr
    run([f"{BIN}/ruff", "check", "src", "tests", "workflow/scripts"], repo_root)


def small_grid(params: dict) -> None:
    """Three tasks, two methods, a few dozen steps: minutes on a 2-core CPU."""
    suite = params["suites"]["micl-synth"]
    suite["sizes"] = {"train": 160, "test": 30, "pretrain": 600}
    params["backbones"]["tiny"]["encoder_pretraining"] = {"steps": {"image": 300, "audio": 150}}
    suite["orders"] = {"caps": ["image_cap", "audio_cap", "video_cap"]}
    params["presets"] = {}
    params["grid"].update(orders=["caps"], methods=["finetune", "joint"], seeds=[0])
    params["backbones"]["tiny"]["stage0"] = {"steps": 60, "batch_size": 32, "lr": 3.0e-3}
    params["train"].update(steps=60, log_every=20)


def read_matrix(results_csv: Path, method: str, metric: str) -> dict[tuple[int, str], float]:
    with open(results_csv) as f:
        return {
            (int(row["stage"]), row["task"]): float(row["value"])
            for row in csv.DictReader(f)
            if row["method"] == method and row["metric"] == metric
        }


@pytest.mark.slow
def test_dvc_repro_small_grid(repo_root, tmp_path, default_params):
    work = tmp_path / "project"
    work.mkdir()
    for name in ("Snakefile", "dvc.yaml", ".dvcignore", ".gitignore"):
        shutil.copy(repo_root / name, work / name)
    for name in ("workflow", ".dvc", "src"):
        shutil.copytree(repo_root / name, work / name, ignore=shutil.ignore_patterns("tmp", "__pycache__"))
    params = copy.deepcopy(default_params)
    small_grid(params)
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run(["git", "init", "-q"], work)

    first = run([f"{BIN}/dvc", "repro"], work)
    assert "report written to reports/index.md" in first.stdout

    table = work / "reports/micl-synth/caps/tiny/table.md"
    assert table.exists() and "finetune" in table.read_text() and "most common (reference)" in table.read_text()
    assert (work / "reports/micl-synth/caps/tiny/heatmaps/finetune_seed0.png").stat().st_size > 1000
    for provenance in ("data/micl-synth", "results/micl-synth/tiny/base/checkpoint"):
        assert "commit" in (work / provenance / "provenance.json").read_text()

    cider = read_matrix(work / "reports/results.csv", "finetune", "cider")
    zeroshot = json.loads((work / "results/micl-synth/tiny/base/eval/scores.json").read_text())
    tasks = ["image_cap", "audio_cap", "video_cap"]
    for i, task in enumerate(tasks):
        before = cider[(i, task)] if i else zeroshot[task]["metrics"]["cider"]
        assert cider[(i + 1, task)] > before + 20, f"finetune did not learn {task} when trained on it"
    assert cider[(3, "image_cap")] < cider[(1, "image_cap")] - 20, "finetune should forget the first task"

    with open(work / "reports/summary.csv") as f:
        summary = {(r["method"], r["metric"]): float(r["mean"] or "nan") for r in csv.DictReader(f)}
    assert summary[("joint", "last_cider")] > summary[("finetune", "last_cider")]
    assert summary[("finetune", "forgetting_cider")] > 20

    # evaluation.cells: needed: the lower triangle and the superdiagonal of the order's tasks, the text task
    run_file = json.loads((work / "results/micl-synth/tiny/finetune/seed0/runs/caps.json").read_text())
    scored = [[value is not None for value in row[:3]] for row in run_file["matrix"]["cider"]]  # the order's
    assert scored == [[True, True, False], [True, True, True], [True, True, True]]
    outside = [row[3:] for row in run_file["matrix"]["accuracy"]]  # the suite's QA tasks and text_qa
    assert run_file["eval_tasks"][3:] == ["image_qa", "audio_qa", "video_qa", "text_qa"]
    assert all(value is not None for row in outside for value in row)

    again = run([f"{BIN}/dvc", "repro"], work)
    assert "Data and pipelines are up to date" in again.stdout, again.stdout

    # A metric's change re-scores the stored predictions: no prediction, training or data job is planned.
    params["suites"]["micl-synth"]["tasks"]["text_qa"]["metric"] = "vqa"
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    dry = run([f"{BIN}/snakemake", "-n", "--profile", "workflow/profiles/default"], work).stdout
    rows = itertools.takewhile(lambda line: not line.startswith("total"), dry.split("Job stats:")[1].splitlines()[3:])
    planned = {row.split()[0] for row in rows}
    assert {"score_stage", "score_base"} <= planned, dry[-2000:]
    assert planned <= {"score_stage", "score_base", "evaluate_reference", "aggregate_run", "report", "all"}, planned
