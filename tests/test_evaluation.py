"""Evaluation at scale: only the cells the metrics read, a per-sample response store that resumes after a
kill and regenerates nothing when nothing changed, seeded test subsets, and scores recomputed from the
stored predictions alone."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import batch_of

from mmcl.core.plan import plan_stages, scored_tasks
from mmcl.data.records import Sample
from mmcl.engine.responses import LOG, ResponseStore, batches
from mmcl.jobs.params import load_params
from mmcl.jobs.scoring import evaluated_samples, rescore

BIN = Path(sys.executable).parent


@pytest.mark.parametrize("tasks", [1, 2, 3, 6])
def test_needed_cells_are_the_lower_triangle_the_superdiagonal_and_the_base_row(tasks):
    order = [f"t{i}" for i in range(tasks)]
    evaluated = [*order, "text"]  # one task outside the order
    rows = [scored_tasks(stage, [order], evaluated, "needed") for stage in plan_stages("sequential", order)]
    base = scored_tasks(None, [order], evaluated, "needed")
    in_order = sum(len([t for t in row if t in order]) for row in rows) + len(order)
    assert in_order == tasks * (tasks + 1) // 2 + 2 * tasks - 1  # the bound, met exactly
    assert all("text" in row for row in rows) and base == evaluated
    assert rows[0][: 2 if tasks > 1 else 1] == order[:2]  # the first stage: its task and the next
    every = [scored_tasks(stage, [order], evaluated, "all") for stage in plan_stages("sequential", order)]
    assert sum(map(len, every)) + len(base) == (tasks + 1) * len(evaluated)  # today's T^2 + T, and the text task


def test_a_stage_two_orders_reach_is_scored_on_both_next_tasks():
    orders = [["a", "b", "c"], ["a", "c", "b"]]
    (first, *_) = plan_stages("sequential", orders[0])
    assert scored_tasks(first, orders, ["a", "b", "c"], "needed") == ["a", "b", "c"]
    (joint,) = plan_stages("joint", orders[0])
    assert scored_tasks(joint, orders, ["a", "b", "c"], "needed") == ["a", "b", "c"]


def sample(i: int, instruction: str = "q") -> Sample:
    return Sample(f"s{i}", "task", "text", instruction * (1 + i % 3), [str(i)], [])


def test_the_store_keeps_its_run_drops_other_runs_and_a_torn_last_line(tmp_path):
    store = ResponseStore(tmp_path, "run-a")
    store.append("task", [("k1", "s1", "one"), ("k2", "s2", "two")])
    with open(tmp_path / LOG, "a") as f:
        f.write('{"run": "run-a", "key": "k3", "ta')  # a kill -9 in the middle of a line
    again = ResponseStore(tmp_path, "run-a")
    assert again.found == {"k1": "one", "k2": "two"} and again.generated == 0
    assert (tmp_path / LOG).read_text().count("\n") == 2 and (tmp_path / LOG).read_text().endswith("\n")
    other = ResponseStore(tmp_path, "run-b")  # another checkpoint, decoding setting or data
    assert other.found == {} and other.dropped == 2 and (tmp_path / LOG).read_text() == ""


def test_batches_are_a_fixed_partition_sorted_by_prompt_length():
    samples = [sample(i) for i in range(10)]
    parts = batches(samples, 4, lambda s: len(s.instruction))
    assert [len(p) for p in parts] == [4, 4, 2]
    lengths = [len(s.instruction) for part in parts for s in part]
    assert lengths == sorted(lengths)
    assert batches(samples[3:], 4, lambda s: len(s.instruction)) != parts  # what is left is batched alike...
    left = [s for s in samples if s.id not in {x.id for x in parts[0]}]
    assert batches(left, 4, lambda s: len(s.instruction)) == parts[1:]  # ...once whole batches are stored


def test_max_samples_is_a_seeded_subset_the_same_for_every_checkpoint(tiny_suite, tmp_path):
    params, data = tiny_suite
    raw = yaml.safe_load(Path(params.path).read_text())
    raw["evaluation"].update(max_samples=3)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    subset = evaluated_samples(load_params(path), "micl-synth", data, ["image_qa"])["image_qa"]
    again = evaluated_samples(load_params(path), "micl-synth", data, ["image_qa"])["image_qa"]
    whole = evaluated_samples(params, "micl-synth", data, ["image_qa"])["image_qa"]
    assert [s.id for s in subset] == [s.id for s in again] and len(subset) == 3
    assert [s.id for s in subset] == [s.id for s in whole if s.id in {x.id for x in subset}]  # in split order
    assert [s.id for s in subset] != [s.id for s in whole[:3]] or len(whole) <= 3  # drawn, not the first rows
    raw["evaluation"]["subset_seed"] = 1
    path.write_text(yaml.safe_dump(raw))
    assert [s.id for s in evaluated_samples(load_params(path), "micl-synth", data, ["image_qa"])["image_qa"]] != [
        s.id for s in subset
    ]


def evaluate_command(params_path: Path, data: Path, base: Path, out: Path) -> list[str]:
    return [
        str(BIN / "mmcl"), "evaluate", "--params", str(params_path), "--suite", "micl-synth", "--data", str(data),
        "--base", str(base), "--out", str(out),
    ]  # fmt: skip


@pytest.mark.slow
def test_a_killed_evaluation_resumes_to_the_uninterrupted_predictions(tiny_suite, tiny_base, tmp_path):
    params, data = tiny_suite
    raw = yaml.safe_load(Path(params.path).read_text())
    raw["evaluation"].update(batch_size=1)  # a batch per sample: the kill lands mid-task
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    whole = tmp_path / "whole"
    subprocess.run(evaluate_command(path, data, tiny_base, whole), env=env, check=True, capture_output=True)

    out = tmp_path / "killed"
    job = subprocess.Popen(evaluate_command(path, data, tiny_base, out), env=env, stderr=subprocess.DEVNULL)
    while job.poll() is None and (not (out / LOG).exists() or (out / LOG).read_text().count("\n") < 20):
        time.sleep(0.005)
    job.send_signal(signal.SIGKILL)
    assert job.wait() == -signal.SIGKILL, "the evaluation finished before it could be killed"
    stored = (out / LOG).read_text().count("\n")
    assert 20 <= stored < 56 and not (out / "scores.json").exists()

    rerun = subprocess.run(evaluate_command(path, data, tiny_base, out), env=env, check=True, capture_output=True)
    made = sum(int(line.split()[1]) for line in rerun.stdout.decode().splitlines() if " predicted, " in line)
    assert made == 56 - stored, "the re-run predicts only what the killed run had not stored"
    for name in sorted(p.name for p in (whole / "predictions").iterdir()):
        assert (out / "predictions" / name).read_bytes() == (whole / "predictions" / name).read_bytes()
    assert (out / LOG).read_bytes() == (whole / LOG).read_bytes()
    assert (out / "scores.json").read_bytes() == (whole / "scores.json").read_bytes()

    unchanged = subprocess.run(evaluate_command(path, data, tiny_base, out), env=env, check=True, capture_output=True)
    counts = [int(line.split()[1]) for line in unchanged.stdout.decode().splitlines() if " predicted, " in line]
    assert len(counts) == 7 and sum(counts) == 0, "an unchanged evaluation generates nothing"
    assert json.loads((out / "provenance.json").read_text())["job"]["generated"] == 0


def test_rescoring_reads_the_stored_predictions_with_another_metric(tiny_suite, tiny_base, tmp_path):
    from mmcl.jobs.evaluate import evaluate

    params, data = tiny_suite
    out = tmp_path / "eval"
    evaluate(params, suite="micl-synth", method=None, data_dir=data, base_dir=tiny_base, checkpoint=None,
             out_dir=out, tasks=["text_qa"], log=lambda _: None)  # fmt: skip
    responses = (out / LOG).read_bytes()
    raw = yaml.safe_load(Path(params.path).read_text())
    raw["suites"]["micl-synth"]["tasks"]["text_qa"]["metric"] = "vqa"
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    scores = rescore(load_params(path), suite="micl-synth", data_dir=data, out_dir=out, tasks=["text_qa"], log=print)
    assert set(scores) == {"text_qa"} and scores["text_qa"]["n"] == scores["text_qa"]["of"] == 8
    assert "accuracy" in scores["text_qa"]["metrics"]
    assert (out / LOG).read_bytes() == responses, "scoring reads the predictions and writes none"


def lora_checkpoints(params, base, out: Path, count: int) -> list[Path]:
    """``count`` stage checkpoints of the default grid's ``lora``, each with its own random adapter."""
    import torch

    from mmcl.jobs.evaluate import prepare
    from mmcl.models.checkpoint import load_base, save_stage

    model, _ = load_base(base)
    adapter = prepare(params, "lora", model).trainable_parameters(model)
    checkpoints = []
    for seed in range(count):
        torch.manual_seed(seed)
        with torch.no_grad():
            for name, parameter in model.named_parameters():
                if ".lora_" in name:
                    parameter.normal_(0, 0.05)
        checkpoints.append(out / f"stage-{seed}")
        save_stage(checkpoints[-1], model, set(adapter), {}, {"seed": seed})
    return checkpoints


def test_merged_adapters_predict_what_the_adapter_path_does_and_the_swap_restores_the_start(
    tiny_suite, tiny_base, tmp_path
):
    import torch

    from mmcl.jobs.evaluate import Target, predict_targets, prepare
    from mmcl.models.checkpoint import StageSwap, load_base, load_stage

    params, data = tiny_suite
    checkpoints = lora_checkpoints(params, tiny_base, tmp_path, 2)
    model, processor = load_base(tiny_base)
    lora = prepare(params, "lora", model)
    model.eval()
    start = {k: v.clone() for k, v in model.state_dict().items()}
    assert lora.merged_weights(model), "lora names the weights it merges into"
    swap = StageSwap(model, lora)
    batch = batch_of(model, processor, params, data, "image_qa")
    for checkpoint in checkpoints:
        assert swap.load(checkpoint)
        merged = model(**batch).logits
        adapter_path, _ = load_base(tiny_base)
        prepare(params, "lora", adapter_path)
        load_stage(checkpoint, adapter_path)
        torch.testing.assert_close(merged, adapter_path.eval()(**batch).logits, atol=1e-4, rtol=1e-4)
    assert not swap.load(None)
    assert all(torch.equal(value, start[key]) for key, value in model.state_dict().items()), "start restored"

    raw = yaml.safe_load(Path(params.path).read_text())
    raw["evaluation"]["merge_adapters"] = False
    unmerged_path = tmp_path / "params.yaml"
    unmerged_path.write_text(yaml.safe_dump(raw))
    runs = {}
    for name, run_params in {"merged": params, "adapter": load_params(unmerged_path)}.items():
        targets = [Target(c, tmp_path / name / c.name, ("image_cap", "audio_qa")) for c in checkpoints]
        predict_targets(run_params, suite="micl-synth", method="lora", data_dir=data, base_dir=tiny_base,
                        targets=targets, log=lambda _: None)  # fmt: skip
        runs[name] = targets
    for merged, adapter in zip(*runs.values(), strict=True):
        assert json.loads((merged.out_dir / "provenance.json").read_text())["job"]["merged"]
        for task in merged.tasks:
            name = f"predictions/{task}.jsonl"
            assert (merged.out_dir / name).read_bytes() == (adapter.out_dir / name).read_bytes()
