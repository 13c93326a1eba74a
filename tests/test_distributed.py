"""A training stage run by `accelerate launch` on two processes saves the single-process checkpoint."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from importlib.util import find_spec
from pathlib import Path

import pytest
import torch
import yaml
from contract_kit import SEED, run_method, setting_for
from safetensors.torch import load_file

from mmcl.config.fingerprint import to_plain
from mmcl.core import paths
from mmcl.core.plan import plan_stages
from mmcl.methods import METHODS

BIN = Path(sys.executable).parent

# Why the two runs are not bit-identical: float reduction order (two half-batch sums all-reduced by gloo
# instead of one sum, other padded widths). Each process's loss weighs its share of the global batch's target
# tokens (mmcl.engine.loop.token_shares), so the processes' averaged gradient is the single process's mean
# over tokens even when the halves hold unequal numbers of them. Measured after 30 Adam steps: 1.2e-7 (one
# float32 ulp) on image_qa, 4.8e-7 on image_cap's captions (1.3e-3 when each process averaged its own
# tokens); a doubled per-process batch gives 2.2e-2 (as would two processes reading the same half).
ATOL = 1e-5
# Micro-batches against whole batches: another float summation order, amplified by Adam's normalisation
# where a moment is near its eps (tests/test_accumulation.py explains it for the task loss). Measured over
# every method's last stage: at most 8.2e-6 (EWC, LoRA, weight fusion); MoInCL's pseudo samples weighed
# against each micro-batch instead of the step's batch: 1/3 of the augmented CE became 2/3.
ATOL_ACCUMULATED = 2e-5


# A method whose loss runs the model a second time on rows that reach other parameters (here the text
# without its image, so not the image projector), as LwF, MoInCL and MoDE do on their distillation rows:
# DDP's own gradient hooks raised "Expected to mark a variable ready only once" on both ranks.
SECOND_FORWARD = """from mmcl.methods import METHODS
from mmcl.methods.base import CLMethod, backbone_parts


@METHODS.register("second_forward")
class SecondForward(CLMethod):
    def trainable_parameters(self, model):
        return backbone_parts(model)

    def loss(self, model, batch, outputs, step):
        text_only = model(batch["input_ids"], batch["attention_mask"], labels=batch["labels"])
        return (outputs.loss + text_only.loss) / 2
"""


def free_port() -> int:
    """A rendezvous port: the default 29500 may be held by a concurrent test run."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run(command: list, cwd: Path, env: dict) -> str:
    done = subprocess.run([str(part) for part in command], cwd=cwd, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout + done.stderr


# Processes on CPU joined by gloo, DDP logging its world size and backend.
GLOO = {"ACCELERATE_USE_CPU": "1", "TORCH_DISTRIBUTED_DEBUG": "INFO", "TORCH_CPP_LOG_LEVEL": "INFO"}


def launch(repo_root: Path, strategy: str, processes: int) -> list:
    """`accelerate launch` as the Slurm launcher runs it, with workflow/accelerate/<strategy>.yaml."""
    command = [BIN / "accelerate", "launch", "--config_file", repo_root / f"workflow/accelerate/{strategy}.yaml"]
    return [*command, "--num_processes", str(processes), "--main_process_port", str(free_port())]


@pytest.mark.slow
@pytest.mark.parametrize("method", ["finetune", "second_forward"])
def test_two_processes_train_the_same_weights_as_one(tiny_suite, tiny_base, tmp_path, repo_root, method):
    plugin = SECOND_FORWARD if method == "second_forward" else None
    stage = stage_args(tiny_suite, tiny_base, tmp_path, method, plugin)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # two processes on two cores; the same kernels in both runs

    started = time.perf_counter()
    run([sys.executable, *stage, "--out", tmp_path / "one"], tmp_path, env)
    # The command line the Slurm launcher uses on GPU nodes, with workflow/accelerate/ddp.yaml. On a
    # machine without CUDA, Accelerate joins the processes into a gloo group only when told to use the
    # CPU (ACCELERATE_USE_CPU); otherwise each would train alone. (`accelerate launch --cpu` starts one
    # process whatever --num_processes says, unless given an MPI hostfile.) GLOO's debug variables make DDP
    # log its world size and backend.
    log = run([*launch(repo_root, "ddp", 2), *stage, "--out", tmp_path / "two"], tmp_path, {**env, **GLOO})
    print(f"single process and 2-process runs: {time.perf_counter() - started:.1f} s")

    assert log.count("world_size: 2") == 2 and "backend_name: gloo" in log, log[-3000:]  # once per rank
    one, two = (load_file(tmp_path / run_dir / "model.safetensors") for run_dir in ("one", "two"))
    assert one.keys() == two.keys()
    diff = max((one[key] - two[key]).abs().max().item() for key in one)
    base = load_file(tiny_base / "projectors.safetensors")
    moved = max((one[f"projectors.{key}"] - value).abs().max().item() for key, value in base.items())
    print(f"max |single - 2 processes| {diff:.2e} (tolerance {ATOL:.0e}); projectors moved up to {moved:.2e}")
    assert moved > 100 * ATOL  # training changed the weights by far more than the tolerance
    assert diff <= ATOL


# Trains, in each process it runs in, the stages a JSON file lists (StageJob fields, the output, the
# artifacts): one start-up for all methods instead of one each (~15 s apiece under `accelerate launch`).
STAGES = """import json, sys
from pathlib import Path

from mmcl.jobs.params import load_params
from mmcl.jobs.stage import StageJob
from mmcl.jobs.train_stage import train_stage

params = load_params(sys.argv[1])
for stage in json.loads(Path(sys.argv[2]).read_text()):
    job = StageJob(**{key: Path(v) if key.endswith("_dir") and v else v for key, v in stage["job"].items()})
    artifacts = {name: Path(directory) for name, directory in stage["artifacts"].items()}
    train_stage(params, job, Path(sys.argv[3]) / job.method, artifacts, log=lambda _: None)
"""
TRAINED = [name for name in METHODS.names() if METHODS.get(name).schedule != "none"]  # zeroshot trains nothing


def two_process_params(ctx, split: bool) -> dict:
    """The contract's params, with each step's batch of 4 in the two halves the 2 processes get (``split``)
    or whole. Dropout is off: each process would draw the masks of its half from the seed the single process
    draws the whole batch's from."""
    config = yaml.safe_load((ctx.root / "params.yaml").read_text())
    config["train"].update(micro_batch_size=config["train"]["batch_size"] // 2 if split else None)
    config["train"]["checkpoint_minutes"] = 1e-4  # a state after (nearly) every step: the processes agree when
    for name, entry in config["methods"].items():
        if "dropout" in to_plain(ctx.params.methods[name]):
            entry["dropout"] = 0.0
    return config


@pytest.mark.slow
def test_every_method_trains_the_same_weights_on_two_processes(contract, tmp_path, repo_root):
    """Each method's last stage of the contract's runs (test_contract.py: its previous stage, teacher and
    replay artifacts), trained again by one process and by 2, gives the same weights (measured: the same
    bits for every method); so does one process in micro-batches of half the batch against whole batches,
    for every method's extra loss terms (test_accumulation.py checks the task loss's gradient). The three
    runs take ~70 s on 2 cores; the contract's suites and runs ~4 min more."""
    stages, starts = [], {}
    for method in TRAINED:
        setting = setting_for(contract, method)
        checkpoints = run_method(contract, method, setting)["checkpoints"]
        cl_method = METHODS.get(method)(contract.params.methods[method])
        stage = plan_stages(cl_method.schedule, list(setting.order))[-1]
        where = (setting.suite, setting.backbone, method, SEED, stage.key)
        job = {
            "suite": setting.suite, "backbone": setting.backbone, "method": method, "seed": SEED,
            "stage_key": stage.key, "data_dir": str(contract.path(paths.suite_dir(setting.suite))),
            "base_dir": str(contract.start(setting)), "prev_dir": str(checkpoints[-2]) if stage.previous else None,
        }  # fmt: skip
        artifacts = {
            name: str(contract.path(paths.stage_artifact(name, *where))) for name in cl_method.required_artifacts(stage)
        }
        stages.append({"job": job, "artifacts": artifacts})
        starts[method] = (checkpoints[-2], None) if stage.previous else (None, contract.start(setting))
    (tmp_path / "stages.json").write_text(json.dumps(stages))
    (tmp_path / "stages.py").write_text(STAGES)
    driver = {}
    for name, split in (("split", True), ("whole", False)):
        params_file = tmp_path / f"params-{name}.yaml"
        params_file.write_text(yaml.safe_dump(two_process_params(contract, split), sort_keys=False))
        driver[name] = [tmp_path / "stages.py", params_file, tmp_path / "stages.json"]

    started = time.perf_counter()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run([sys.executable, *driver["split"], tmp_path / "one"], tmp_path, env)
    run([sys.executable, *driver["whole"], tmp_path / "whole"], tmp_path, env)
    log = run([*launch(repo_root, "ddp", 2), *driver["split"], tmp_path / "two"], tmp_path, {**env, **GLOO})
    print(f"{len(TRAINED)} methods' last stages, 1 process twice, 2 processes: {time.perf_counter() - started:.1f} s")
    assert log.count("world_size: 2") == 2 * len(TRAINED), log[-3000:]  # each stage's DDP, on both ranks
    differ, accumulated, still = [], [], []
    for method, (previous, base) in starts.items():
        one, two, whole = (load_file(tmp_path / d / method / "model.safetensors") for d in ("one", "two", "whole"))
        assert one.keys() == two.keys() == whole.keys(), method
        diff = max((one[key] - two[key]).abs().max().item() for key in one)
        split = max((one[key] - whole[key]).abs().max().item() for key in one)
        before = load_file(previous / "model.safetensors") if previous else base_weights(base)
        moved = max((one[key] - before[key]).abs().max().item() for key in one if key in before)
        print(
            f"{method}: max |single - 2 processes| {diff:.2e} (tolerance {ATOL:.0e}), |micro-batches - whole| "
            f"{split:.2e} (tolerance {ATOL_ACCUMULATED:.0e}); moved {moved:.2e}"
        )
        differ += [method] * (diff > ATOL)
        accumulated += [method] * (split > ATOL_ACCUMULATED)
        still += [method] * (moved <= 100 * ATOL)
    assert not differ, f"2 processes train other weights than one: {differ}"
    assert not accumulated, f"micro-batches train other weights than whole batches: {accumulated}"
    assert not still, f"training moved the weights by less than 100 times the tolerance: {still}"


def base_weights(base: Path) -> dict[str, torch.Tensor]:
    from mmcl.models.checkpoint import load_base

    return load_base(base)[0].state_dict()


def stage_args(tiny_suite, tiny_base, tmp_path, method: str = "finetune", plugin: str | None = None, **train) -> list:
    """`-m mmcl train-stage` of the tiny backbone's first stage of ``method`` (which the ``plugin`` source
    registers, if given): 30 steps of 8 samples (a global batch), fp32, then the ``train`` settings."""
    params, data = tiny_suite
    config = yaml.safe_load(Path(params.path).read_text())
    config["train"].update(steps=30, batch_size=8, log_every=10, precision="fp32", **train)
    if plugin:
        (tmp_path / "plugins").mkdir()
        (tmp_path / "plugins" / f"{method}.py").write_text(plugin)
        config["plugins"] = ["plugins"]
        config["methods"][method] = {}
    params_file = tmp_path / "params.yaml"
    params_file.write_text(yaml.safe_dump(config, sort_keys=False))
    stage = ["-m", "mmcl", "train-stage", "--params", params_file, "--suite", "micl-synth", "--backbone", "tiny"]
    return [*stage, "--method", method, "--seed", "0", "--stage", "image_qa", "--data", data, "--base", tiny_base]


# TF32 matmuls (mmcl.engine.loop.make_accelerator) round to ~1e-3 relative, differently when the batch is
# split otherwise; a bound, not a measurement (no GPU where these tests were written).
ATOL_GPU = 1e-3


def compare_with_one_process(tiny_suite, tiny_base, tmp_path, repo_root, strategy: str, processes: int) -> None:
    """A stage in micro-batches of 2 under ``strategy`` on ``processes`` GPUs, against one process."""
    stage = stage_args(tiny_suite, tiny_base, tmp_path, micro_batch_size=2)
    run([sys.executable, *stage, "--out", tmp_path / "one"], tmp_path, os.environ)
    run([*launch(repo_root, strategy, processes), *stage, "--out", tmp_path / "many"], tmp_path, os.environ)
    one, many = (load_file(tmp_path / d / "model.safetensors") for d in ("one", "many"))
    assert one.keys() == many.keys()
    diff = max((one[key] - many[key]).abs().max().item() for key in one)
    base = load_file(tiny_base / "projectors.safetensors")
    moved = max((one[f"projectors.{key}"] - value).abs().max().item() for key, value in base.items())
    print(f"{strategy} on {processes} processes: max |single - {strategy}| {diff:.2e}; moved {moved:.2e}")
    assert moved > 10 * ATOL_GPU
    assert diff <= ATOL_GPU


# What a DeepSpeed run needs that this machine may lack.
WITHOUT_DEEPSPEED = [
    need
    for need, missing in (
        ("the deepspeed package", find_spec("deepspeed") is None),
        ("CUDA", not torch.cuda.is_available()),
    )
    if missing
]


# A stage trained under DeepSpeed ZeRO-2: the engine is given the micro-batch and accumulation by the loop
# (Accelerate cannot infer them without a DataLoader) and owns backward and the step.
@pytest.mark.skipif(bool(WITHOUT_DEEPSPEED), reason=f"DeepSpeed needs {' and '.join(WITHOUT_DEEPSPEED)}: missing here")
def test_deepspeed_zero2_trains_a_stage_in_micro_batches(tiny_suite, tiny_base, tmp_path, repo_root):
    processes = min(torch.cuda.device_count(), 2)
    compare_with_one_process(tiny_suite, tiny_base, tmp_path, repo_root, "deepspeed_zero2", processes)


# Why FSDP is not tried on CPU: Accelerate (1.16) makes a run FSDP only on accelerator devices. Under
# ACCELERATE_USE_CPU=1 the processes form a MULTI_CPU (gloo) group and the FSDP plugin is dropped
# (AcceleratorState gets none), and FSDP1 refuses fsdp_sync_module_states on CPU. Torch's FSDP itself runs
# on gloo (a torchrun of FSDP1 over 2 CPU processes trains), but not under `accelerate launch`, as stages run.
FSDP_NEEDS = (
    "FSDP needs 2 CUDA GPUs: Accelerate runs FSDP only on accelerator devices (with ACCELERATE_USE_CPU=1 "
    "it drops the FSDP plugin for a MULTI_CPU run, and FSDP1 refuses sync_module_states on CPU)"
)


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason=FSDP_NEEDS)
def test_fsdp_trains_and_saves_a_stage_on_two_gpus(tiny_suite, tiny_base, tmp_path, repo_root):
    compare_with_one_process(tiny_suite, tiny_base, tmp_path, repo_root, "fsdp", 2)


def killed_then_resumed(tiny_suite, tiny_base, tmp_path, repo_root, strategy: str) -> None:
    """A stage under ``strategy`` killed (SIGKILL, as a node failure) once a sharded resumable state exists,
    then re-run: it resumes from every rank's shard to an uninterrupted run's weights."""
    processes = min(torch.cuda.device_count(), 2)
    stage = [*launch(repo_root, strategy, processes), *stage_args(tiny_suite, tiny_base, tmp_path, micro_batch_size=2)]
    run([*stage, "--out", tmp_path / "whole"], tmp_path, os.environ)
    config = yaml.safe_load((tmp_path / "params.yaml").read_text())
    config["train"]["checkpoint_minutes"] = 1e-4  # a state after every step
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    out = tmp_path / "stopped"
    state = paths.resume_dir(out) / "state.json"
    job = subprocess.Popen([str(p) for p in [*stage, "--out", out]], cwd=tmp_path, start_new_session=True)
    while job.poll() is None and not (state.exists() and json.loads(state.read_text())["step"] >= 5):
        time.sleep(0.2)
    os.killpg(job.pid, signal.SIGKILL)
    job.wait()
    assert state.exists() and not out.exists(), "killed mid-stage, after a state was saved"
    log = run([*stage, "--out", out], tmp_path, os.environ)
    assert "resuming at step" in log, log[-3000:]
    whole, resumed = (load_file(tmp_path / d / "model.safetensors") for d in ("whole", "stopped"))
    diff = max((whole[key] - resumed[key]).abs().max().item() for key in whole)
    print(f"{strategy}: max |uninterrupted - resumed| {diff:.2e}")
    assert diff <= ATOL_GPU


@pytest.mark.skipif(bool(WITHOUT_DEEPSPEED), reason=f"DeepSpeed needs {' and '.join(WITHOUT_DEEPSPEED)}: missing here")
def test_deepspeed_zero2_resumes_a_killed_stage_from_its_shards(tiny_suite, tiny_base, tmp_path, repo_root):
    killed_then_resumed(tiny_suite, tiny_base, tmp_path, repo_root, "deepspeed_zero2")


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason=FSDP_NEEDS)
def test_fsdp_resumes_a_killed_stage_from_its_shards(tiny_suite, tiny_base, tmp_path, repo_root):
    killed_then_resumed(tiny_suite, tiny_base, tmp_path, repo_root, "fsdp")


@pytest.mark.parametrize(("name", "kind"), [("ddp", "MULTI_GPU"), ("fsdp", "FSDP"), ("deepspeed_zero2", "DEEPSPEED")])
def test_strategy_files_load_with_accelerate(repo_root, name, kind):
    from accelerate.commands.config.config_args import load_config_from_file
    from accelerate.commands.launch import launch_command_parser

    config = load_config_from_file(str(repo_root / "workflow" / "accelerate" / f"{name}.yaml"))
    assert config.distributed_type == kind
    # `accelerate launch` turns fsdp_config/deepspeed_config entries into its own options and silently
    # ignores the keys that match none (a misspelt key would fall back to the default).
    options = {action.dest for action in launch_command_parser()._actions}
    nested = {**(config.fsdp_config or {}), **(config.deepspeed_config or {})}
    assert set(nested) <= options, sorted(set(nested) - options)
