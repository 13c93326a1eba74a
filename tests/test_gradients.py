"""MoDE's Figure 5: `mmcl gradients` on trained stages of a tiny unified model, its figure in the report,
and the rule that makes it, planned only for grids whose suite draws."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
from conftest import build_drawing
from test_reports import BACKBONE, GROUP, METHOD_ORDER, SUITE, TASKS, write_inputs
from test_workflow import planned_jobs

from mmcl.analyses.gradients.figure import reached_by
from mmcl.cli import main
from mmcl.core.io import read_json
from mmcl.core.plan import prefix_key
from mmcl.jobs.report import build_reports
from mmcl.jobs.stage import StageJob
from mmcl.jobs.train_stage import train_stage

LAST_LAYER = ".layers.1."  # the unified backbone's LLM has two


@pytest.fixture(scope="module")
def sketch(tmp_path_factory, default_params):
    """A rough drawing world (a few steps of everything: the diagnostic needs no skill) and a 3-step
    `image_qa` stage of moelora and of mode from its base."""
    world = build_drawing(
        tmp_path_factory.mktemp("sketch"), default_params, tokenizer_steps=5, judge_steps=2, stage0_steps=2,
        train=32, test=8,
    )  # fmt: skip
    for method in ("moelora", "mode"):
        job = StageJob("drawing", "unified", method, 0, "image_qa", world.data, world.base, None)
        train_stage(world.params, job, world.root / method, log=lambda _: None)
    return world


def gradients(world, method: str, out: Path, seed: int = 0) -> dict:
    main([
        "gradients", "--params", world.params.path, "--suite", "drawing", "--backbone", "unified",
        "--method", method, "--seed", str(seed), "--stage", "image_qa", "--data", str(world.data),
        "--base", str(world.base), "--checkpoint", str(world.root / method), "--out", str(out), "--batch-size", "8",
    ])  # fmt: skip
    return read_json(out)


def test_moeloras_experts_have_a_cosine_on_real_batches(sketch, tmp_path):
    result = gradients(sketch, "moelora", tmp_path / "moelora.json")
    assert {k: result[k] for k in ("method", "stage", "seed", "text_task", "image_tasks", "batch_sizes")} == {
        "method": "moelora",
        "stage": "image_qa",
        "seed": 0,
        "text_task": "image_qa",
        "image_tasks": ["draw"],
        "batch_sizes": {"text": 8, "image": 8},
    }
    tensors = result["tensors"]
    assert tensors and all(".experts." in name for name in tensors), "what moelora trains, routers included"
    for name, t in tensors.items():
        assert t["text_norm"] > 0 and t["image_norm"] > 0 and -1 <= t["cosine"] <= 1, name
    assert len({round(t["cosine"], 6) for t in tensors.values()}) > 1


def test_modes_mask_keeps_the_text_loss_off_the_last_visual_adapter(sketch, tmp_path):
    tensors = gradients(sketch, "mode", tmp_path / "mode.json")["tensors"]
    visual = {name: t for name, t in tensors.items() if ".visual." in name}
    experts = {name: t for name, t in tensors.items() if ".experts." in name}
    assert visual and experts and len(visual) + len(experts) == len(tensors)
    assert all(t["image_norm"] > 0 for t in visual.values()), "the image tokens written go through it"
    assert all(t["text_norm"] > 0 for t in experts.values())
    # The guarantee: in the last layer, image positions only make their own logits, which the text loss
    # (answer tokens) leaves out; earlier layers pass the prompt's images on to the answer by attention.
    last = {name: t for name, t in visual.items() if LAST_LAYER in name}
    assert last and all(t["text_norm"] == 0 and t["cosine"] is None for t in last.values())
    assert all(t["text_norm"] > 0 for name, t in visual.items() if name not in last)
    # Not MoDE's ideal of pure batches: the image loss reaches the text experts too, through the prompt
    # (a text span the image tokens attend to) and its last token, which predicts `<img>`.
    assert all(t["image_norm"] > 0 for t in experts.values())


def test_the_same_seed_gives_the_same_file(sketch, tmp_path):
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        gradients(sketch, "moelora", tmp_path / f"{name}.json", seed)
    a, b, c = ((tmp_path / f"{name}.json").read_bytes() for name in "abc")
    assert a == b != c


def test_a_suite_without_generation_tasks_is_refused(repo_root, capsys):
    run = ["--suite", "micl-synth", "--backbone", "tiny", "--method", "lora", "--seed", "0", "--stage", "image_qa"]
    paths = ["--data", "d", "--base", "b", "--checkpoint", "c", "--out", "o"]
    with pytest.raises(SystemExit) as exit_:
        main(["gradients", "--params", str(repo_root / "params.yaml"), *run, *paths])
    assert exit_.value.code == 2
    assert "suite 'micl-synth' has no image-generation task (family `generation`)" in capsys.readouterr().err


def conflicts(method: str, cosines: list[float | None], stage: str = prefix_key(TASKS)) -> dict:
    """A gradient file whose tensors have ``cosines`` (None: only the text loss reaches the tensor)."""
    tensors = {
        f"t{i}": {"cosine": c, "text_norm": 1.0, "image_norm": 0.0 if c is None else 2.0} for i, c in enumerate(cosines)
    }
    return {
        "suite": SUITE, "backbone": BACKBONE, "method": method, "stage": stage, "seed": 0,
        "text_task": TASKS[-1], "image_tasks": ["draw"], "batch_sizes": {"text": 2, "image": 2}, "tensors": tensors,
    }  # fmt: skip


def test_the_report_draws_the_gradient_files_of_each_group(params_file, tmp_path):
    run_files, baselines = write_inputs(tmp_path / "runs")
    files = []
    for method, cosines in (("finetune", [-0.5, 0.2, 0.9]), ("lwf", [None, None])):
        files.append(tmp_path / f"{method}.json")
        files[-1].write_text(json.dumps(conflicts(method, cosines)))
    assert reached_by(conflicts("lwf", [0.3, None, None])["tensors"]) == ([0.3], 2, 0)
    out = tmp_path / "reports"
    build_reports(run_files, out, method_order=METHOD_ORDER, baselines=baselines, inputs={"gradients": files})
    figure = out / GROUP / "gradient_conflict.png"
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / GROUP / "table.md").exists(), "written after the group's directory, not replaced with it"
    index = (out / "index.md").read_text()
    assert "## Gradient conflict (MoDE, Figure 5)" in index and f"]({GROUP.as_posix()}/gradient_conflict.png)" in index
    bare = tmp_path / "bare"
    build_reports(run_files, bare, method_order=METHOD_ORDER, baselines=baselines)
    assert not (bare / GROUP / "gradient_conflict.png").exists() and "Gradient" not in (bare / "index.md").read_text()
    files[0].write_text(json.dumps(conflicts("finetune", [0.1], stage=TASKS[0])))
    with pytest.raises(ValueError, match="last stage of no order"):
        build_reports(run_files, tmp_path / "wrong", method_order=METHOD_ORDER, inputs={"gradients": files})
    flags = [arg for path in files for arg in ("--input", f"gradients={path}")]  # as the report rule repeats it
    with pytest.raises(ValueError, match="last stage of no order"):  # the first file is read, not only the last
        main(["report", "--params", str(params_file()), "--runs", *map(str, run_files), *flags, "--out", str(out)])


def test_gradients_are_planned_for_the_first_seed_of_grids_that_draw(repo_root, params_file, default_params):
    def mode_grid(params):
        params["grid"] = copy.deepcopy(default_params["presets"]["mode"])

    mode = planned_jobs(repo_root, params_file(mode_grid))
    stage = prefix_key(default_params["suites"]["mode-synth"]["orders"]["coin"])
    methods = default_params["presets"]["mode"]["methods"]
    assert sorted(o for o in mode if "/gradients/" in o) == sorted(
        f"results/mode-synth/unified/{method}/seed0/gradients/{stage}.json" for method in methods
    )
    assert not [o for o in planned_jobs(repo_root, params_file()) if "/gradients/" in o]
