"""Shared fixtures: the repository's params.yaml as a dict, writing variants of it, decoding media."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def default_params() -> dict:
    return yaml.safe_load((ROOT / "params.yaml").read_text())


@pytest.fixture
def params_file(tmp_path, default_params):
    """``params_file(edit)`` writes params.yaml after ``edit(params_dict)`` and returns its path."""

    def write(edit=None, name: str = "params.yaml") -> Path:
        params = copy.deepcopy(default_params)
        if edit:
            edit(params)
        path = tmp_path / name
        path.write_text(yaml.safe_dump(params, sort_keys=False))
        return path

    return write


def shrink(params: dict) -> None:
    """A few samples per task and a handful of steps: enough to exercise every code path quickly."""
    params["suites"]["micl-synth"]["sizes"] = {"train": 24, "test": 8, "pretrain": 16}
    params["backbones"]["tiny"]["encoder_pretraining"] = {"steps": {"image": 3, "audio": 3}, "batch_size": 8}
    params["backbones"]["tiny"]["stage0"] = {"steps": 4, "batch_size": 8, "lr": 3.0e-3}
    params["train"].update(steps=3, task_steps={}, batch_size=4, log_every=1)


@pytest.fixture(scope="session")
def tiny_suite(tmp_path_factory, default_params):
    """Small micl-synth data prepared by `mmcl prepare`, with its params."""
    from mmcl.cli import main
    from mmcl.config import load_params

    root = tmp_path_factory.mktemp("tiny")
    params = copy.deepcopy(default_params)
    shrink(params)
    path = root / "params.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    data = root / "data" / "micl-synth"
    main(["prepare", "--params", str(path), "--suite", "micl-synth", "--out", str(data)])
    return load_params(path), data


@pytest.fixture(scope="session")
def tiny_base(tiny_suite, tmp_path_factory):
    """The tiny backbone's base directory (stage 0 run for a few steps)."""
    from mmcl.training.jobs import train_base

    params, data = tiny_suite
    out = tmp_path_factory.mktemp("base") / "checkpoint"
    train_base(params, "micl-synth", "tiny", data, out, log=lambda _: None)
    return out


@pytest.fixture(scope="session")
def processor():
    """Decodes media as the encoders' inputs (32 px images, 4 video frames, 40 mel bins): converted
    datasets must load through it."""
    from transformers import CLIPImageProcessor, WhisperFeatureExtractor

    from mmcl.models.checkpoint import MediaProcessor

    images = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    sound = WhisperFeatureExtractor(feature_size=40, sampling_rate=16000, hop_length=320, chunk_length=1)
    return MediaProcessor(images, sound, video_frames=4)


# --- Whole-workflow runs in a scratch project (shared by the workflow, Slurm and resume tests) ---

PROJECT_FILES = ("Snakefile", "dvc.yaml", ".dvcignore", ".gitignore")


def make_project(where: Path, params: dict) -> Path:
    """A copy of the workflow (not of data or results) with its own params.yaml."""
    import shutil

    where.mkdir(parents=True, exist_ok=True)
    for name in PROJECT_FILES:
        shutil.copy(ROOT / name, where / name)
    for name in ("workflow", ".dvc", "src"):
        shutil.copytree(ROOT / name, where / name, ignore=shutil.ignore_patterns("tmp", "__pycache__"))
    (where / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return where


def tiny_grid(params: dict) -> None:
    """Two methods x three stages of a few dozen samples: about a minute and a half on 2 cores."""
    shrink(params)
    suite = params["suites"]["micl-synth"]
    suite["sizes"] = {"train": 48, "test": 8, "pretrain": 16}
    suite["orders"] = {"short": ["image_qa", "audio_cap", "video_qa"]}
    params["presets"] = {}  # paper tables name orders this grid drops
    params["grid"].update(orders=["short"], methods=["finetune", "lora"], seeds=[0])
    params["train"].update(steps=30, batch_size=4, log_every=5, checkpoint_every=5)


@pytest.fixture(scope="session")
def tiny_grid_params(default_params) -> dict:
    params = copy.deepcopy(default_params)
    tiny_grid(params)
    return params


@pytest.fixture(scope="session")
def reference_grid(tmp_path_factory, tiny_grid_params) -> Path:
    """The tiny grid run once, locally and uninterrupted: what other ways of running it must equal."""
    import os
    import subprocess
    import sys

    project = make_project(tmp_path_factory.mktemp("reference") / "project", tiny_grid_params)
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    done = subprocess.run(
        [str(bin_dir / "snakemake"), "--cores", "2"], cwd=project, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return project
