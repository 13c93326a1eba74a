"""What every job records beside its outputs: resolved config and its fingerprint, package versions, git
commit, host and the hardware facts that change floating-point results (CPU model, thread counts, the BLAS
and oneDNN torch was built with, CUDA and cuDNN): what ``mmcl compare`` shows when two result sets differ."""

from __future__ import annotations

import os
import platform
import re
import subprocess
import sys
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

from mmcl.core.io import write_json

PACKAGES = (
    "mmcl",
    "torch",
    "transformers",
    "tokenizers",
    "peft",
    "accelerate",
    "safetensors",
    "numpy",
    "omegaconf",
    "snakemake",
    "dvc",
    "pycocoevalcap",
    "pillow",
    "soundfile",
    "soxr",
    "av",
    "lm_eval",
)


def package_versions() -> dict[str, str | None]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


CODE = ("src", "workflow", "Snakefile")  # what the jobs run


def git_state(cwd: Path | None = None) -> dict:
    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10, check=True)
        except (OSError, subprocess.SubprocessError):
            return None
        return out.stdout.strip()

    status = git("status", "--porcelain", "--untracked-files=no")
    # The last commit that changed the code (not only reports or notes): a commit of regenerated reports
    # leaves it, so re-running that code names the same one.
    code = git("log", "-1", "--format=%H", "--", *(f":/{path}" for path in CODE))
    return {
        "commit": git("rev-parse", "HEAD"),
        "code_commit": code or None,
        "dirty": bool(status) if status is not None else None,
    }


# Environment variables that change a CPU job's bits: thread counts, and the kernels MKL and ATen pick.
NUMERIC_VARIABLES = (
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_CBWR",
    "ATEN_CPU_CAPABILITY",
    "ONEDNN_MAX_CPU_ISA",
)
BUILD_SETTINGS = ("BLAS_INFO", "LAPACK_INFO", "USE_MKLDNN", "TORCH_VERSION")


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux, else what ``platform`` knows)."""
    try:
        found = re.search(r"^model name\s*:\s*(.+)$", Path("/proc/cpuinfo").read_text(), re.MULTILINE)
    except OSError:
        found = None
    return found.group(1).strip() if found else platform.processor() or platform.machine()


def hardware(torch) -> dict:
    """What, besides code and config, decides a job's floating-point bits; ``torch``: the module when the job
    imported it (its threads, build and GPU stack), else None."""
    facts = {
        "cpu": cpu_model(),
        "cpus": os.cpu_count(),
        "variables": {name: os.environ[name] for name in NUMERIC_VARIABLES if name in os.environ},
    }
    if torch is None:
        return facts
    facts["threads"] = {"intra_op": torch.get_num_threads(), "inter_op": torch.get_num_interop_threads()}
    facts["cpu_capability"] = torch.backends.cpu.get_cpu_capability()  # the vector kernels ATen runs
    config = torch.__config__.show()
    settings = dict(re.findall(r"(\w+)=([^,\s]*)", config))
    facts["build"] = {name: settings.get(name) for name in BUILD_SETTINGS}
    libraries = (line.strip(" -") for line in config.splitlines() if line.startswith("  - "))
    facts["build"]["libraries"] = [line for line in libraries if re.match(r"Intel|OpenBLAS|oneDNN", line)]
    cuda = torch.cuda.is_available()
    facts["cuda"] = torch.version.cuda if cuda else None
    facts["cudnn"] = torch.backends.cudnn.version() if cuda else None
    return facts


def record(path: Path, params, job: dict) -> None:
    """Write ``path`` (JSON) describing how the outputs beside it were made."""
    torch = sys.modules.get("torch")  # a job that never imported torch (scoring, reports) ran on the CPU
    write_json(
        path,
        {
            "job": job,
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "git": git_state(),
            "python": sys.version.split()[0],
            "platform": platform.platform(),
            "host": platform.node(),
            "device": torch.cuda.get_device_name() if torch is not None and torch.cuda.is_available() else "cpu",
            "hardware": hardware(torch),
            "packages": package_versions(),
            "params_file": str(params.path),
            "fingerprint": params.config_fingerprint(),
            "params": params.resolved(),
        },
    )
