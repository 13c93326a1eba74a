"""`snakemake --profile workflow/profiles/slurm` on a real single-node Slurm cluster started on this machine.

The cluster (tests/slurm/cluster.sh) needs root and, where Slurm is not installed, apt-get. A machine
that cannot start it fails the test; MMCL_SKIP_SLURM=1 skips it instead.
"""

from __future__ import annotations

import copy
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import make_project

from mmcl.core.registry import ConfigError
from mmcl.jobs.params import load_params

CLUSTER = Path(__file__).parent / "slurm" / "cluster.sh"
KINDS = ("default", "train_base", "train_stage", "evaluate")
BIN = Path(sys.executable).parent
ENV = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}


@pytest.fixture(scope="session")
def slurm_partition(tmp_path_factory):
    """Start the cluster once per session; its partition's name."""
    if os.environ.get("MMCL_SKIP_SLURM") == "1":
        pytest.skip("MMCL_SKIP_SLURM=1")
    where = tmp_path_factory.mktemp("slurm")
    started = subprocess.run(["bash", CLUSTER, "start", where], capture_output=True, text=True)
    if started.returncode != 0:
        subprocess.run(["bash", CLUSTER, "stop", where], check=False)
        pytest.fail(
            "could not start a Slurm test cluster (needs root, and apt-get where slurm-wlm and munge are "
            f"missing; MMCL_SKIP_SLURM=1 skips this test):\n{started.stdout}{started.stderr}"
        )
    yield "test"
    subprocess.run(["bash", CLUSTER, "stop", where], check=True)


def test_resources_are_validated(params_file):
    def typo(params):
        params["resources"]["train_stage"]["gpu"] = 2

    with pytest.raises(ConfigError, match=r"resources\.train_stage\.gpu: unknown key 'gpu'.*'gpus'"):
        load_params(params_file(typo))

    def strategy(params):
        params["resources"]["distributed"] = "zero2"

    with pytest.raises(ConfigError, match=r"resources\.distributed: unknown strategy 'zero2'"):
        load_params(params_file(strategy))


def planned(out: str) -> dict[str, tuple[dict, str]]:
    """Rule -> (resources, shell command) of its first job in the output of `snakemake -n -p`."""
    jobs = {}
    for block in re.split(r"^(?=(?:local)?rule \w+:$)", out, flags=re.M)[1:]:
        rule = re.match(r"(?:local)?rule (\w+):", block).group(1)
        resources = re.search(r"^ +resources: (.*)$", block, re.M)
        shell = re.search(r"^Shell command: (.*)$", block, re.M)
        pairs = dict(item.split("=", 1) for item in resources.group(1).split(", ")) if resources else {}
        jobs.setdefault(rule, (pairs, shell.group(1) if shell else ""))
    return jobs


def test_plan_asks_slurm_for_params_resources(tmp_path, tiny_grid_params):
    """Resources reach the jobs in the plugin's names; a stage on two GPUs starts under accelerate."""
    params = copy.deepcopy(tiny_grid_params)
    params["resources"].update(partition="gpu", account="lab", distributed="fsdp")
    params["resources"]["train_stage"].update(gpus=2, gpu_type="a100", cpus=4, mem_mb=32000, runtime=90)
    project = make_project(tmp_path / "project", params)
    plan = subprocess.run(
        [BIN / "snakemake", "-n", "-p", "--cores", "2"], cwd=project, env=ENV, capture_output=True, text=True
    )
    assert plan.returncode == 0, plan.stderr[-3000:]
    jobs = planned(plan.stdout)

    resources, shell = jobs["train_stage"]
    wanted = {"gpu": "2", "gpu_model": "a100", "cpus_per_task": "4", "mem_mb": "32000", "runtime": "90"}
    wanted |= {"slurm_partition": "gpu", "slurm_account": "lab", "slurm_extra": "--signal=TERM@300"}
    assert resources.items() >= wanted.items()
    launcher = "accelerate launch --num_processes 2 --config_file workflow/accelerate/fsdp.yaml --main_process_port 0"
    assert f"exec {launcher} -m mmcl train-stage --params" in shell
    # train_base stays one process; light jobs ask for no GPU and get no early SIGTERM.
    assert "exec mmcl train-base --params" in jobs["train_base"][1]
    assert jobs["train_base"][0]["slurm_extra"] == "--signal=TERM@300"
    assert jobs["report"][0].items() >= {"gpu": "0", "cpus_per_task": "1", "slurm_partition": "gpu"}.items()
    assert "gpu_model" not in jobs["report"][0] and "slurm_extra" not in jobs["report"][0]


@pytest.mark.slow
def test_grid_on_slurm_equals_local_run(slurm_partition, tmp_path, tiny_grid_params, reference_grid):
    params = copy.deepcopy(tiny_grid_params)
    params["resources"]["partition"] = slurm_partition
    for kind in KINDS:
        job = params["resources"][kind]
        # No GPUs here, and the local reference run's thread counts (--cores 2): results depend on them.
        job.update(gpus=0, gpu_type=None, cpus=min(job["cpus"], 2), mem_mb=500, runtime=10)
    project = make_project(tmp_path / "project", params)

    started = time.perf_counter()
    done = subprocess.run(
        # Status every few seconds instead of the profile's 40 s: jobs here take seconds.
        [BIN / "snakemake", "--profile", "workflow/profiles/slurm", "--slurm-init-seconds-before-status-checks", "2"],
        cwd=project,
        env=ENV,
        capture_output=True,
        text=True,
    )
    elapsed = time.perf_counter() - started
    print(f"\ntiny grid through Slurm: {elapsed:.0f} s")
    assert done.returncode == 0, done.stderr[-5000:]

    # Every job was a Slurm job, finished on the test partition: one per job of the local run.
    run_id = re.search(r"SLURM run ID: (\S+)", done.stderr).group(1)
    submitted = re.findall(r"has been submitted with SLURM jobid (\d+)", done.stderr)
    queue = subprocess.run(
        ["squeue", "--states=all", "--noheader", f"--name={run_id}", "--format=%i %T %P"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert sorted(queue.stdout.split("\n")[:-1]) == sorted(f"{i} COMPLETED {slurm_partition}" for i in submitted)
    local_jobs = len(list((reference_grid / "logs" / "benchmarks").rglob("*.tsv")))
    assert len(submitted) == local_jobs

    # Deterministic jobs with the same thread counts: every matrix cell equal. (The reference run asked
    # for params.yaml's GPUs on a machine without any: a local run ignores what --resources does not name.)
    assert (project / "reports" / "results.csv").read_text() == (reference_grid / "reports" / "results.csv").read_text()
