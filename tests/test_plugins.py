"""A new method is one file plus one params.yaml entry: a module outside the package, named by `plugins:`,
is registered, validated like a built-in method, planned by the workflow and run by the commands."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import make_project

BIN = Path(sys.executable).parent
PLUGIN = '''"""Projectors only: every stage trains the projectors, scaled by a setting of its own."""

from dataclasses import dataclass

from mmcl.config.ranges import positive
from mmcl.config.schema import MethodConfig
from mmcl.methods import METHODS
from mmcl.methods.base import CLMethod, parameters_under


@dataclass
class ProjectorsOnlyConfig(MethodConfig):
    scale: float = positive(1.0)


@METHODS.register("projectors_only", ProjectorsOnlyConfig)
class ProjectorsOnly(CLMethod):
    def trainable_parameters(self, model):
        return parameters_under(model, "projectors.")

    def loss(self, model, batch, outputs, step):
        return self.config.scale * outputs.loss
'''


def with_plugin(params: dict, **settings) -> dict:
    return {**params, "plugins": ["plugins"], "methods": {**params["methods"], "projectors_only": settings}}


def mmcl(*args, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.run([str(BIN / "mmcl"), *map(str, args)], cwd=cwd, env=env, capture_output=True, text=True)


@pytest.fixture
def plugin_dir(tmp_path) -> Path:
    (tmp_path / "plugins").mkdir()
    (tmp_path / "plugins" / "projectors_only.py").write_text(PLUGIN)
    return tmp_path


def write(where: Path, params: dict) -> Path:
    path = where / "params.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


def test_a_plugin_method_is_validated_like_a_built_in_one(plugin_dir, tiny_suite):
    params, _ = tiny_suite
    raw = yaml.safe_load(Path(params.path).read_text())
    raw["grid"]["methods"] = ["finetune", "projectors_only"]
    done = mmcl("validate-config", "--params", write(plugin_dir, with_plugin(raw, scale=2.0)), cwd=plugin_dir)
    assert done.returncode == 0 and "2 method(s)" in done.stdout, done.stderr
    for settings, message in (
        ({"scale": -1.0}, "methods.projectors_only.scale: must be > 0, got -1.0"),
        ({"scael": 2.0}, "methods.projectors_only.scael: unknown key 'scael' (did you mean 'scale'?)"),
    ):
        done = mmcl("validate-config", "--params", write(plugin_dir, with_plugin(raw, **settings)), cwd=plugin_dir)
        assert done.returncode == 2 and message in done.stderr, done.stderr
    without = {**with_plugin(raw), "plugins": []}
    done = mmcl("validate-config", "--params", write(plugin_dir, without), cwd=plugin_dir)
    assert done.returncode == 2 and "unknown method 'projectors_only'" in done.stderr, done.stderr


@pytest.mark.slow
def test_a_plugin_method_trains_and_evaluates_through_the_commands(plugin_dir, tiny_suite, tiny_base):
    from mmcl.core.io import read_json

    params, data = tiny_suite
    path = write(plugin_dir, with_plugin(yaml.safe_load(Path(params.path).read_text()), scale=0.5))
    checkpoint, scores = plugin_dir / "stage" / "checkpoint", plugin_dir / "stage" / "eval"
    stage = ["--suite", "micl-synth", "--backbone", "tiny", "--method", "projectors_only", "--data", data]
    done = mmcl("train-stage", "--params", path, *stage, "--seed", 0, "--stage", "image_qa", "--base", tiny_base,
                "--out", checkpoint, cwd=plugin_dir)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    meta = read_json(checkpoint / "meta.json")
    assert meta["method"] == "projectors_only" and meta["trainable_parameters"] > 0
    saved = set(read_json(checkpoint / "sha256.json"))
    assert "model.safetensors" in saved
    done = mmcl("evaluate", "--params", path, "--suite", "micl-synth", "--data", data, "--base", tiny_base,
                "--method", "projectors_only", "--checkpoint", checkpoint, "--out", scores, cwd=plugin_dir)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert set(read_json(scores / "scores.json")) >= {"image_qa", "text_qa"}


def test_the_workflow_plans_a_plugin_methods_stages(tmp_path, tiny_grid_params):
    params = with_plugin(tiny_grid_params)
    params["grid"] = {**params["grid"], "methods": ["projectors_only"]}
    project = make_project(tmp_path / "project", params)
    (project / "plugins").mkdir()
    (project / "plugins" / "projectors_only.py").write_text(PLUGIN)
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    done = subprocess.run([str(BIN / "snakemake"), "-n", "--cores", "1"], cwd=project, env=env, capture_output=True,
                          text=True)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    order = params["suites"]["micl-synth"]["orders"]["short"]
    assert re.search(rf"^train_stage\s+{len(order)}$", done.stdout, re.M), done.stdout[-2000:]
    assert "method=projectors_only" in done.stdout
