"""Preemption-safe training: a stage stopped at any step resumes to the bits of an uninterrupted run."""

from __future__ import annotations

import csv
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import make_project
from safetensors.torch import load_file

from mmcl.engine.loop import PREEMPTED
from mmcl.engine.sampling import StepSampler

BIN = Path(sys.executable).parent
ENV = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "OMP_NUM_THREADS": "1"}


def test_a_step_batch_depends_only_on_seed_and_step():
    sampler = StepSampler(size=10, batch_size=4, steps=9, seed=3)
    batches = list(sampler)
    assert batches == list(StepSampler(size=10, batch_size=4, steps=9, seed=3))
    assert list(StepSampler(size=10, batch_size=4, steps=9, seed=3, start=5)) == batches[5:]
    assert batches != list(StepSampler(size=10, batch_size=4, steps=9, seed=4))
    # Two batches per epoch of 10 (the last 2 samples wait for the next epoch's shuffle); positions
    # count epochs, so a sample drawn twice is drawn at two positions.
    first_epoch = [p for batch in batches[:2] for p in batch]
    assert len(set(first_epoch)) == 8 and max(first_epoch) < 10
    assert all(10 <= p < 20 for p in batches[2] + batches[3])


@pytest.fixture
def stage_command(tiny_suite, tiny_base, tmp_path):
    """`mmcl train-stage` of a 40-step first stage, as a command line for a given seed and output."""
    params, data = tiny_suite
    raw = yaml.safe_load(Path(params.path).read_text())
    raw["train"].update(steps=40, batch_size=4, log_every=1, checkpoint_every=0)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw))

    def command(out: Path, seed: int = 0) -> list[str]:
        return [
            str(BIN / "mmcl"), "train-stage", "--params", str(path), "--suite", "micl-synth", "--backbone", "tiny",
            "--method", "finetune", "--seed", str(seed), "--stage", "image_qa", "--data", str(data),
            "--base", str(tiny_base), "--out", str(out),
        ]  # fmt: skip

    return command


def weights(checkpoint: Path) -> dict:
    return load_file(checkpoint / "model.safetensors")


def same_bits(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(a[k].equal(b[k]) for k in a)


def test_sigterm_saves_and_the_rerun_resumes_bit_identically(stage_command, tmp_path):
    subprocess.run(stage_command(tmp_path / "whole" / "checkpoint"), env=ENV, check=True, capture_output=True)
    whole = weights(tmp_path / "whole" / "checkpoint")

    out = tmp_path / "stopped" / "checkpoint"
    stop_after = random.Random().randint(3, 30)  # any step: the result must not depend on it
    job = subprocess.Popen(stage_command(out), env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    for line in job.stdout:
        if line.startswith(f"step {stop_after}/"):
            job.send_signal(signal.SIGTERM)  # what Slurm sends before preempting or timing out a job
            break
    log = line + job.stdout.read()
    assert job.wait() == PREEMPTED, log
    assert "state saved" in log and not out.exists(), "a stopped stage must not look complete"
    assert (out.parent / "checkpoint.resume" / "state.json").exists()

    rerun = subprocess.run(stage_command(out), env=ENV, check=True, capture_output=True, text=True)
    assert "resuming at step" in rerun.stdout
    assert same_bits(weights(out), whole), f"resumed after step {stop_after}: weights differ"
    assert not (out.parent / "checkpoint.resume").exists(), "the resume state is removed once the stage is done"

    subprocess.run(stage_command(tmp_path / "seed1" / "checkpoint", seed=1), env=ENV, check=True)
    assert not same_bits(weights(tmp_path / "seed1" / "checkpoint"), whole), "another seed must train differently"


def snakemake(project: Path) -> subprocess.CompletedProcess:
    command = [str(BIN / "snakemake"), "--cores", "2"]
    return subprocess.run(command, cwd=project, env=ENV, capture_output=True, text=True)


def matrix(project: Path, seed: int) -> dict[tuple, str]:
    with open(project / "reports/results.csv") as f:
        return {
            (r["method"], r["stage"], r["task"], r["metric"]): r["value"]
            for r in csv.DictReader(f)
            if r["seed"] == str(seed)
        }


@pytest.mark.slow
def test_kill_9_mid_stage_then_rerun_gives_the_uninterrupted_matrix(tmp_path, tiny_grid_params, reference_grid):
    project = make_project(tmp_path / "project", tiny_grid_params)
    rng = random.Random()
    method, stage = rng.choice(["finetune", "lora"]), rng.choice(["image_qa", "image_qa+audio_cap"])
    min_step = rng.choice([5, 10, 15, 20])
    state = project / f"results/micl-synth/tiny/{method}/seed0/stages/{stage}/checkpoint.resume/state.json"

    started = time.perf_counter()
    workflow = subprocess.Popen(
        [str(BIN / "snakemake"), "--cores", "2"], cwd=project, env=ENV, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )  # fmt: skip
    killed = None
    while workflow.poll() is None and killed is None:
        if state.exists() and yaml.safe_load(state.read_text())["step"] >= min_step:
            pattern = re.escape(f"--method {method} --seed 0 --stage {stage} ")
            pids = subprocess.run(["pgrep", "-f", f"train-stage .*{pattern}"], capture_output=True, text=True)
            for pid in pids.stdout.split():
                os.kill(int(pid), signal.SIGKILL)
                killed = pid
        time.sleep(0.01)
    log = workflow.communicate()[0]
    assert killed, f"the stage {method}/{stage} finished before it could be killed:\n{log[-2000:]}"
    assert workflow.returncode != 0, "the workflow must report the killed job"

    rerun = snakemake(project)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    train_log = project / f"logs/micl-synth/tiny/{method}/seed0/{stage}.train.log"
    assert "resuming at step" in train_log.read_text()
    print(f"kill -9 of {method}/{stage} after step {min_step}, then rerun: {time.perf_counter() - started:.0f} s")

    assert matrix(project, 0) == matrix(reference_grid, 0), "the resumed grid must equal the uninterrupted one"
    # Not a vacuous equality: training moved the scores between stages (another seed trains differently:
    # test_sigterm_saves_and_the_rerun_resumes_bit_identically).
    resumed = matrix(project, 0)
    after = {(m, int(stage), t, metric): v for (m, stage, t, metric), v in resumed.items()}
    assert any(v != after.get((m, stage - 1, t, metric), v) for (m, stage, t, metric), v in after.items() if stage)

    # A damaged checkpoint is not used: the next run moves it aside and recomputes it (and what follows).
    damaged = project / f"results/micl-synth/tiny/{method}/seed0/stages/image_qa/checkpoint/model.safetensors"
    damaged.write_bytes(damaged.read_bytes()[:-8] + bytes(8))
    again = snakemake(project)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "does not match its recorded SHA-256" in again.stdout + again.stderr
    assert list(damaged.parent.parent.glob("checkpoint.corrupt-*"))
    assert matrix(project, 0) == matrix(reference_grid, 0)


def test_a_sharded_state_restores_what_it_saved_and_refuses_another_run(tmp_path):
    """The wrapper FSDP and DeepSpeed stages save through (their own shard formats run on GPUs only:
    tests/test_distributed.py), here around a single process's Accelerate state."""
    import torch
    from accelerate import Accelerator

    from mmcl.engine.resume import discard_state, load_sharded_state, save_sharded_state

    def prepared(seed: int):
        """A fresh run's accelerator (one per process in a stage) and what it prepared."""
        torch.manual_seed(seed)
        accelerator = Accelerator(cpu=True)
        model = torch.nn.Linear(4, 3)
        optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1 / (1 + step))
        return accelerator, *accelerator.prepare(model, optimizer, scheduler)

    accelerator, model, optimizer, scheduler = prepared(0)
    for _ in range(3):
        model(torch.randn(2, 4)).square().sum().backward()
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()
    path = tmp_path / "checkpoint.resume"
    save_sharded_state(path, accelerator, step=3, losses=[1.5], fingerprint="run-a")
    assert not path.with_name("checkpoint.resume.partial").exists(), "the finished save replaced its partial copy"

    logged: list[str] = []
    accelerator, again, optimizer_again, scheduler_again = prepared(1)
    assert load_sharded_state(path, accelerator, fingerprint="run-a", log=logged.append) == (3, [1.5])
    assert all(a.equal(b) for a, b in zip(model.state_dict().values(), again.state_dict().values(), strict=True))
    moments = [[state["exp_avg"] for state in o.state_dict()["state"].values()] for o in (optimizer, optimizer_again)]
    assert all(a.equal(b) for a, b in zip(*moments, strict=True))
    assert scheduler_again.state_dict()["last_epoch"] == 3

    assert load_sharded_state(path, accelerator, fingerprint="run-b", log=logged.append) == (0, [])
    assert "other settings" in logged[-1]
    shard = next(file for file in path.rglob("*.safetensors"))
    shard.write_bytes(shard.read_bytes()[:-8] + bytes(8))
    assert load_sharded_state(path, accelerator, fingerprint="run-a", log=logged.append) == (0, [])
    assert "damaged" in logged[-1]
    discard_state(path)
    assert not path.exists()
