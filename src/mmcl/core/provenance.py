"""What every job records beside its outputs: resolved config, package versions, git commit, host."""

from __future__ import annotations

import platform
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


def git_state(cwd: Path | None = None) -> dict:
    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10, check=True)
        except (OSError, subprocess.SubprocessError):
            return None
        return out.stdout.strip()

    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": git("rev-parse", "HEAD"), "dirty": bool(status) if status is not None else None}


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
            "packages": package_versions(),
            "params_file": str(params.path),
            "params": params.resolved(),
        },
    )
