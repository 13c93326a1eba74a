"""Shared fixtures: the repository's params.yaml as a dict, and writing variants of it."""

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
    params["train"].update(steps=3, batch_size=4, log_every=1)


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
