"""`mmcl compare`: the reproduction verdict. Its agreement rule on hand-made summaries, against a git revision,
and on real grids: one that differs from another only by machine-like floating-point noise (the kernels an
older CPU would run) is "reproduced"; one with a real change (fine-tuning's learning rate ×10) is not."""

from __future__ import annotations

import copy
import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import make_project, tiny_grid

from mmcl.jobs.compare import compare_command

COLUMNS = ["suite", "order", "backbone", "method", "metric", "mean", "std", "n_seeds", "ci_low", "ci_high", "interval"]


def write_summary(directory: Path, rows: dict[tuple[str, str], tuple]) -> Path:
    """A report directory whose summary.csv holds ``(method, metric) -> (mean, ci_low, ci_high)``."""
    directory.mkdir(parents=True, exist_ok=True)
    with (directory / "summary.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(COLUMNS)
        for (method, metric), (mean, low, high) in rows.items():
            writer.writerow(["micl-synth", "o", "tiny", method, metric, mean, "", 3, low, high, "t over seeds"])
    return directory


def test_estimates_agree_within_their_combined_intervals(tmp_path):
    a = write_summary(tmp_path / "a", {("lora", "last_acc"): (50, 46, 54), ("lora", "fwt_acc"): (0, -1, 1)})
    # |50 - 55.5| = 5.5 <= sqrt(4² + 4²) = 5.66: agrees; the non-headline fwt_acc may disagree
    b = write_summary(tmp_path / "b", {("lora", "last_acc"): (55.5, 51.5, 59.5), ("lora", "fwt_acc"): (9, 8, 10)})
    lines = []
    assert compare_command(str(a), str(b), None, lines.append)
    assert lines[-1] == "Verdict: reproduced (every headline metric agrees)"
    assert any("fwt_acc" in line and line.endswith("NO") for line in lines), "every shared metric is printed"
    # 5.7 apart: outside; and a headline metric on one side only
    c = write_summary(tmp_path / "c", {("lora", "last_acc"): (55.7, 51.7, 59.7), ("lora", "learn_acc"): (80, 79, 81)})
    lines = []
    assert not compare_command(str(a), str(c), None, lines.append)
    verdict = "\n".join(lines[lines.index(next(line for line in lines if line.startswith("Verdict"))) :])
    assert "not reproduced (2 headline cells disagree)" in verdict
    assert "lora/last_acc: 50.0 [46.0, 54.0] (n=3) vs 55.7 [51.7, 59.7] (n=3)" in verdict
    assert "lora/learn_acc (only in" in verdict


def test_without_intervals_only_equal_values_agree(tmp_path):
    nan = float("nan")
    a, b, c = (write_summary(tmp_path / name, {("lora", "forgetting"): (value, nan, nan)}) for name, value in
               (("a", 12.5), ("b", 12.5), ("c", 12.6)))  # fmt: skip
    assert compare_command(str(a), str(b), None, lambda _: None)
    assert not compare_command(str(a), str(c), None, lambda _: None)


def test_against_a_revision_reads_the_committed_reports_and_exits_non_zero(tmp_path):
    def git(*args):
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    write_summary(tmp_path / "reports", {("lora", "last_acc"): (50, 46, 54)})
    git("init", "-q")
    git("add", "reports")
    git("-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "reports")
    write_summary(tmp_path / "reports", {("lora", "last_acc"): (70, 66, 74)})
    mmcl = Path(sys.executable).parent / "mmcl"
    done = subprocess.run([mmcl, "compare", "--against", "HEAD"], cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 1 and "HEAD:reports" in done.stdout and "Verdict: not reproduced" in done.stdout
    git("checkout", "reports")
    done = subprocess.run([mmcl, "compare", "--against", "HEAD"], cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0 and "Verdict: reproduced" in done.stdout


# --- Real grids: finetune on a two-task order, 3 seeds, learnable in a couple of minutes on 2 cores ---

# What differs between CPUs, emulated on this one: MKL's conditional-reproducibility mode and ATen's kernel
# level as a CPU without AVX2 would run them. The bits change; what the methods do does not.
OLDER_CPU = {"MKL_CBWR": "COMPATIBLE", "ATEN_CPU_CAPABILITY": "default"}


def run_grid(where: Path, default_params: dict, env: dict | None = None, lr_scale: float = 1.0) -> Path:
    params = copy.deepcopy(default_params)
    tiny_grid(params)
    suite = params["suites"]["micl-synth"]
    suite["sizes"] = {"train": 400, "test": 60, "pretrain": 400}
    suite["orders"] = {"short": ["image_qa", "video_qa"]}
    params["backbones"]["tiny"]["encoder_pretraining"] = {"steps": {"image": 400, "audio": 20}, "batch_size": 32}
    params["backbones"]["tiny"]["stage0"] = {"steps": 100, "batch_size": 16, "lr": 3.0e-3}
    params["grid"].update(orders=["short"], methods=["finetune"], seeds=[0, 1, 2])
    params["train"].update(steps=150, task_steps={}, batch_size=16, log_every=25)
    params["methods"]["finetune"]["lr"] = params["train"]["lr"] * lr_scale
    project = make_project(where, params)
    bin_dir = Path(sys.executable).parent
    environment = {**os.environ, **(env or {}), "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    done = subprocess.run(
        [str(bin_dir / "snakemake"), "--cores", "2"], cwd=project, env=environment, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return project / "reports"


@pytest.fixture(scope="module")
def grids(tmp_path_factory, default_params) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("compare")
    return {
        "here": run_grid(root / "here", default_params),
        "older cpu": run_grid(root / "older", default_params, env=OLDER_CPU),
        "lr x10": run_grid(root / "lr10", default_params, lr_scale=10.0),
    }


@pytest.mark.slow
def test_machine_noise_is_reproduced_and_a_real_change_is_not(grids):
    here, older, changed = grids["here"], grids["older cpu"], grids["lr x10"]
    assert (here / "results.csv").read_bytes() != (older / "results.csv").read_bytes(), "the noise changed bits"
    summary = {r["metric"]: r for r in csv.DictReader((here / "summary.csv").open()) if r["method"] == "finetune"}
    assert float(summary["learn_acc"]["mean"]) > 30, "the tasks are learnt: a change has something to show"

    lines = []
    assert compare_command(str(here), str(older), None, lines.append), "\n".join(lines)
    assert any("variables.MKL_CBWR" in line for line in lines), "the provenance that differs is named"

    lines = []
    assert not compare_command(str(here), str(changed), None, lines.append), "\n".join(lines)
    verdict = "\n".join(lines[next(i for i, line in enumerate(lines) if line.startswith("Verdict")) :])
    assert "finetune/learn_acc" in verdict
    assert any(line.startswith("  fingerprint:") for line in lines), "the changed setting shows in the fingerprint"
