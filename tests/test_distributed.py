"""A training stage run by `accelerate launch` on two processes saves the single-process checkpoint."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from safetensors.torch import load_file

BIN = Path(sys.executable).parent

# Why the two runs are not bit-identical: DDP averages the processes' gradients, i.e. the mean of
# per-process mean losses, whereas one process averages over all target tokens of the global batch.
# Both are equal only when each half of a batch holds as many target tokens: image_qa answers are one
# word, so here they are, and what remains is float reduction order (two half-batch sums all-reduced
# by gloo instead of one sum, other padded widths). Measured: 1.2e-7, one float32 ulp, after 30 Adam
# steps. On captions (unequal lengths) the loss weighting alone gives 1.3e-3, and a doubled per-process
# batch gives 2.2e-2 (as would two processes reading the same half); both fall far outside ATOL.
ATOL = 1e-5


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


@pytest.mark.slow
@pytest.mark.parametrize("method", ["finetune", "second_forward"])
def test_two_processes_train_the_same_weights_as_one(tiny_suite, tiny_base, tmp_path, repo_root, method):
    params, data = tiny_suite
    config = yaml.safe_load(Path(params.path).read_text())
    config["train"].update(steps=30, batch_size=8, log_every=10, precision="fp32")  # batch_size is global
    if method == "second_forward":
        (tmp_path / "plugins").mkdir()
        (tmp_path / "plugins" / "second_forward.py").write_text(SECOND_FORWARD)
        config["plugins"] = ["plugins"]
        config["methods"][method] = {}
    params_file = tmp_path / "params.yaml"
    params_file.write_text(yaml.safe_dump(config, sort_keys=False))
    stage = ["-m", "mmcl", "train-stage", "--params", params_file, "--suite", "micl-synth", "--backbone", "tiny"]
    stage += ["--method", method, "--seed", "0", "--stage", "image_qa", "--data", data, "--base", tiny_base]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # two processes on two cores; the same kernels in both runs

    started = time.perf_counter()
    run([sys.executable, *stage, "--out", tmp_path / "one"], tmp_path, env)
    # The command line the Slurm launcher uses on GPU nodes, with workflow/accelerate/ddp.yaml. On a
    # machine without CUDA, Accelerate joins the processes into a gloo group only when told to use the
    # CPU (ACCELERATE_USE_CPU); otherwise each would train alone. (`accelerate launch --cpu` starts one
    # process whatever --num_processes says, unless given an MPI hostfile.) The torch debug variables make
    # DDP log its world size and backend.
    launch = [BIN / "accelerate", "launch", "--config_file", repo_root / "workflow/accelerate/ddp.yaml"]
    launch += ["--num_processes", "2", "--main_process_port", free_port()]
    debug = {"ACCELERATE_USE_CPU": "1", "TORCH_DISTRIBUTED_DEBUG": "INFO", "TORCH_CPP_LOG_LEVEL": "INFO"}
    log = run([*launch, *stage, "--out", tmp_path / "two"], tmp_path, {**env, **debug})
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
