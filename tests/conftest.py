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
