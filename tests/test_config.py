"""params.yaml validation: every mistake fails at load with the file, the dotted key and a fix."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from mmcl.config.fingerprint import to_plain
from mmcl.core.registry import ConfigError
from mmcl.jobs.params import load_params


def test_default_params_load_typed(params_file):
    params = load_params(params_file())
    assert params.grid.methods == ["finetune", "lora", "joint", "zeroshot"]
    assert type(params.methods["lora"]).__name__ == "LoraConfig" and params.methods["lora"].r == 16
    assert type(params.backbones["tiny"]).__name__ == "TinyConfig"
    assert params.methods["finetune"].type == "finetune"  # type defaults to the entry's name
    assert params.order("img-aud-vid")[:2] == ["image_cap", "image_qa"]


def test_text_task_is_one_name_or_a_list(params_file):
    params = load_params(params_file())
    assert params.suites["micl-synth"].text_tasks == ["text_qa"]
    assert params.suites["llava-synth"].text_tasks == ["text_nlu", "text_nlg"]
    # A single name stays a string (not a one-item list): the suite's fingerprint, and so every job of a
    # grid written before lists were allowed, stays the same.
    assert to_plain(params.suites["micl-synth"])["text_task"] == "text_qa"


def test_alignment_and_size_labels(params_file):
    params = load_params(params_file())
    llava, micl = params.suites["llava-synth"], params.suites["micl-synth"]
    assert llava.alignment.task == "caption" and micl.alignment is None
    assert "caption" in llava.tasks and "caption" not in llava.evaluated_tasks  # not a column of the matrix
    assert micl.evaluated_tasks == list(micl.tasks)
    assert params.presets["llava"].backbones == ["tiny-s", "tiny-m", "tiny-l"]
    assert [params.backbones[b].size for b in ("tiny", "tiny-s", "tiny-m", "tiny-l")] == [None, "0.09M", "0.5M", "2.7M"]
    hidden = [params.backbones[b].llm.hidden_size for b in ("tiny-s", "tiny-m", "tiny-l")]
    assert hidden == sorted(hidden) and len(set(hidden)) == 3
    # Neither is read by the jobs the suite's and the backbone's fingerprints trigger (prepare, train_base):
    # changing them re-runs neither, and grids made before they existed keep their results.
    edited = load_params(
        params_file(
            lambda raw: (
                raw["suites"]["llava-synth"]["alignment"].update(steps=7),
                raw["backbones"]["tiny"].update(size="1M"),
            ),
            name="edited.yaml",
        )
    )
    sections = ("suites.llava-synth", "backbones.tiny")
    assert edited.fingerprint(*sections) == params.fingerprint(*sections)
    assert edited.fingerprint("suites.llava-synth.alignment") != params.fingerprint("suites.llava-synth.alignment")


def set_key(path: str, value):
    def edit(params):
        node = params
        *parents, last = path.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value

    return edit


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (set_key("train.stpes", 10), ["train.stpes", "unknown key", "did you mean 'steps'"]),
        (set_key("train.steps", "many"), ["train.steps", "expected an integer, got 'many'"]),
        (
            set_key("grid.methods", ["finetune", "lroa"]),
            ["grid.methods[1]", "unknown method 'lroa'", "'lora'"],
        ),
        (set_key("grid.backbones", ["tiyn"]), ["grid.backbones[0]", "'tiny'"]),
        (set_key("grid.orders", ["img-aud-vdi"]), ["grid.orders[0]", "'img-aud-vid'"]),
        (set_key("methods.ewc2", {"type": "finetun"}), ["methods.ewc2.type", "did you mean 'finetune'"]),
        (set_key("methods.lora.alhpa", 8), ["methods.lora.alhpa", "did you mean 'alpha'"]),
        (set_key("methods.lora.r", "eight"), ["methods.lora.r", "expected an integer"]),
        (set_key("backbones.tiny.llm.hiden_size", 64), ["backbones.tiny.llm.hiden_size", "'hidden_size'"]),
        (set_key("backbones.tiny.family", "tinny"), ["backbones.tiny.family", "'tiny'"]),
        (set_key("suites.micl-synth.tasks.image_qa.family", "vqa"), ["tasks.image_qa.family", "'qa'"]),
        (set_key("suites.micl-synth.tasks.image_qa.modality", "imgae"), ["image_qa.modality", "'image'"]),
        (
            set_key("suites.micl-synth.orders.img-aud-vid", ["image_cap", "imag_qa"]),
            ["orders.img-aud-vid[1]", "'image_qa'"],
        ),
        (
            set_key("suites.micl-synth.text_task", ["text_qa", "text_qq"]),
            ["suites.micl-synth.text_task[1]", "unknown task 'text_qq'", "'text_qa'"],
        ),
        (set_key("suites.micl-synth.text_task", 3), ["micl-synth.text_task", "a task name or a list of task names"]),
        (
            set_key("suites.llava-synth.alignment.task", "captoin"),
            ["suites.llava-synth.alignment.task", "unknown task 'captoin'", "(did you mean 'caption'?)"],
        ),
        (
            set_key("suites.llava-synth.alignment.task", "vqa"),
            ["suites.llava-synth.alignment.task", "'vqa' is a qa task", "a captioning task", "(caption)"],
        ),
        (
            set_key("suites.llava-synth.orders.ivor", ["caption", "vqa"]),
            ["suites.llava-synth.alignment.task", "'caption' is also in order 'ivor'"],
        ),
        (set_key("suites.llava-synth.alignment.stpes", 3), ["llava-synth.alignment.stpes", "'steps'"]),
        (set_key("evalution", {}), ["evalution", "unknown section", "'evaluation'"]),
        (set_key("train.schedule", "cosin"), ["train.schedule", "'cosine'"]),
    ],
)
def test_mistakes_fail_with_file_key_and_suggestion(params_file, edit, expected):
    path = params_file(edit)
    with pytest.raises(ConfigError) as err:
        load_params(path)
    message = str(err.value)
    assert message.startswith(str(path))
    for fragment in expected:
        assert fragment in message


def test_validation_does_not_import_torch(repo_root):
    """The Snakefile validates params on every parse (once per cluster job): it must stay light."""
    code = (
        "import sys; from mmcl.jobs.params import load_params; load_params('params.yaml'); "
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=repo_root, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_snakemake_dry_run_reports_the_mistake(params_file, repo_root):
    path = params_file(set_key("grid.methods", ["finetune", "lroa"]))
    result = subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", "--quiet", "--config", f"params={path}"],
        cwd=repo_root,
        capture_output=True,
        text=True,
    )
    assert result.returncode != 0
    assert "grid.methods[1]: unknown method 'lroa' (did you mean 'lora'?)" in result.stdout + result.stderr


def test_validate_config_command(params_file):
    ok = subprocess.run(
        [sys.executable, "-m", "mmcl", "validate-config", "--params", str(params_file())],
        capture_output=True,
        text=True,
    )
    assert ok.returncode == 0 and "valid" in ok.stdout and "4 runs" in ok.stdout
    bad = subprocess.run(
        [
            sys.executable,
            "-m",
            "mmcl",
            "validate-config",
            "--params",
            str(params_file(set_key("train.stpes", 1))),
        ],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2 and "train.stpes" in bad.stderr


def test_paper_configuration_extends_params_yaml(repo_root, tmp_path):
    """workflow/presets/*.yaml: params.yaml plus what the paper changes, merged key by key."""
    params = load_params(repo_root / "workflow/presets/moincl-real.yaml")
    assert params.grid.suite == "micl-real" and params.grid.seeds == [0, 1, 2]
    lora = params.methods["lora"]
    assert (lora.r, lora.alpha, lora.dropout, lora.target_modules, lora.lr) == (8, 32, 0.1, ["q_proj", "v_proj"], 1e-5)
    assert params.methods["moincl_ikd"].ikd.instructions == "downloads/natural-instructions/tasks"
    assert params.methods["moincl_ikd"].ptgm.enabled is False  # kept from params.yaml
    assert params.train.weight_decay == 0.05 and params.train.schedule == "cosine"  # replaced; kept
    assert params.suites["micl-synth"].tasks  # every section of params.yaml is still there

    mode = load_params(repo_root / "workflow/presets/mode-real.yaml")  # MoDE's: methods.md §3
    grid = mode.grid
    assert (grid.suite, grid.orders, grid.backbones, grid.seeds) == ("mode-real", ["coin"], ["anole-7b"], [0, 1, 2])
    assert grid.methods == ["lora", "moelora", "mode", "lwf", "ewc"]
    mlp = ["gate_proj", "up_proj", "down_proj"]
    adapters = [mode.methods[name] for name in grid.methods]
    assert all((m.r, m.alpha, m.dropout, m.target_modules) == (8, 16, 0.05, mlp) for m in adapters)
    assert {m.lr or mode.train.lr for m in adapters} == {1e-4} and mode.methods["mode"].experts == 4
    kd = mode.methods["mode"].kd
    assert (kd.top_k, kd.temperature, kd.weight, kd.dataset) == (256, 2.0, 0.3, "llava_align")
    assert (mode.train.batch_size, mode.train.warmup_ratio, mode.train.grad_clip) == (8, 0.1, 10.0)

    typo = tmp_path / "typo.yaml"
    typo.write_text(f"extends: {repo_root / 'params.yaml'}\ntrain: {{stpes: 3}}\n")
    with pytest.raises(ConfigError, match=r"typo.yaml \(extending .*params.yaml\): train.stpes: .*'steps'"):
        load_params(typo)
    missing = tmp_path / "missing.yaml"
    missing.write_text("extends: nowhere.yaml\n")
    with pytest.raises(ConfigError, match=r"nowhere.yaml: no such file; .*fix `extends` in .*missing.yaml"):
        load_params(missing)


@pytest.mark.parametrize("name", ["moincl-real", "mode-real", "llava-real"])
def test_paper_configuration_reports_to_its_own_directory(repo_root, name):
    """The whole DAG is planned, from the downloads of every dataset it reads to its own report; its DVC
    stage depends on exactly those datasets, each the cached output of its own stage."""
    from mmcl.jobs.datasets import files_owner
    from mmcl.methods import METHODS

    result = subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", "--config", f"params=workflow/presets/{name}.yaml"],
        cwd=repo_root,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"reports/{name}/index.md" in result.stdout
    assert "reports/index.md" not in result.stdout
    params = load_params(repo_root / f"workflow/presets/{name}.yaml")
    methods = [METHODS.get(params.methods[name].type)(params.methods[name]) for name in params.grid.methods]
    datasets = {task.dataset for task in params.suite().tasks.values()}
    datasets |= {dataset for method in methods for dataset in method.datasets()}  # MoDE's image-text pairs
    for dataset in datasets:
        assert f"output: data/{dataset}/prepare.json" in result.stdout
        assert f"downloads/{files_owner(params, dataset)}/" in result.stdout  # the LLaVA groups share one download

    converted = set(re.findall(r"output: (data/[^/\s]+)/prepare\.json", result.stdout))
    stages = yaml.safe_load((repo_root / "workflow/presets/dvc.yaml").read_text())["stages"]
    assert {dep for dep in stages[name.replace("-", "_")]["deps"] if dep.startswith("data/")} == converted
    listed = subprocess.run(
        [Path(sys.executable).parent / "dvc", "stage", "list", "workflow/presets/dvc.yaml"],
        cwd=repo_root,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for path in converted:
        assert re.search(rf"dvc.yaml:dataset@{path.removeprefix('data/')}\s+Outputs {path}$", listed, re.M)
