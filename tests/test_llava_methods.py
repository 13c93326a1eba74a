"""The LLaVA continual-learning study's methods: the soft-target loss against hand computations,
rehearsal buffers, what mSGM (+ OLF) trains, and how the workflow plans and re-runs them."""

from __future__ import annotations

import copy
import dataclasses
import math
import os
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import yaml
from conftest import make_project, shrink

from mmcl.core.integrity import problems
from mmcl.core.io import read_json
from mmcl.core.plan import stage_from_key
from mmcl.core.registry import ConfigError
from mmcl.data.families import suite_families
from mmcl.data.records import load_split
from mmcl.data.replay import BUFFER, replay_size
from mmcl.engine.batching import IGNORE, Collator, InstructionDataset
from mmcl.jobs.params import load_params
from mmcl.jobs.replay import build_replay
from mmcl.jobs.stage import stage_samples
from mmcl.methods import METHODS
from mmcl.methods.base import parameters_under
from mmcl.methods.soft_targets import SoftTargets, SoftTargetsConfig, soft_target_loss
from mmcl.models.checkpoint import load_base
from mmcl.models.mllm import supervised_rows

BIN = Path(sys.executable).parent
ENV = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
FIRST, SECOND, THIRD = "image_qa", "image_qa+audio_cap", "image_qa+audio_cap+video_qa"


def method(params, name):
    config = params.methods[name]
    return METHODS.get(config.type)(config)


# --- the soft-target loss ---


def test_soft_target_loss_by_hand():
    alpha = 0.3
    # Two sequences over a vocabulary of 4; the logits at position t predict the label at t + 1.
    logits = torch.tensor(
        [
            [[2.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, -1.0], [5.0, 5.0, 5.0, 5.0]],
            [[0.0, 0.0, 3.0, 1.0], [1.0, 2.0, 3.0, 4.0], [9.0, 0.0, 0.0, 0.0]],
        ]
    )
    labels = torch.tensor([[IGNORE, 0, 3], [IGNORE, IGNORE, 1]])  # supervised: (0, 0→0), (0, 1→3), (1, 1→1)

    def log_softmax(row):
        total = math.log(sum(math.exp(x) for x in row))
        return [x - total for x in row]

    expected = 0.0
    for row, gold in (([2.0, 0.0, 0.0, 0.0], 0), ([0.0, 1.0, 0.0, -1.0], 3), ([1.0, 2.0, 3.0, 4.0], 1)):
        logp = log_softmax(row)
        expected -= (1 - alpha) * logp[gold] + alpha / 3 * sum(logp[v] for v in range(4) if v != gold)
    expected /= 3
    rows = supervised_rows(labels)
    targets = labels[:, 1:][rows[:, :-1]]
    assert soft_target_loss(logits[rows], targets, alpha).item() == pytest.approx(expected, rel=1e-6)

    # The method's loss is that of its α, on the supervised rows the forward computed logits at.
    method = SoftTargets(SoftTargetsConfig(type="soft_targets", soft_alpha=alpha))
    outputs = SimpleNamespace(logits=logits[rows], targets=targets)
    assert method.loss(None, {"labels": labels}, outputs, step=0).item() == pytest.approx(expected, rel=1e-6)
    logits[1, 0] = torch.tensor([50.0, -50.0, 0.0, 0.0])  # unsupervised: not a row, however extreme
    assert soft_target_loss(logits[rows], targets, alpha).item() == pytest.approx(expected, rel=1e-6)


def test_alpha_zero_is_the_usual_cross_entropy(tiny_suite, tiny_base):
    params, data = tiny_suite
    model, processor = load_base(tiny_base)
    collator = Collator(model.tokenizer, model.num_media_tokens, suite_families(params.suites["micl-synth"]), seed=3)
    samples = load_split(data, ["image_cap"], "train")[:3] + load_split(data, ["audio_qa"], "train")[:3]
    dataset = InstructionDataset(samples, data, processor)
    batch = collator.train_batch([dataset[i] for i in range(len(samples))])
    assert (batch["labels"] == IGNORE).any(dim=1).all(), "prompts and padding are unsupervised"
    with torch.no_grad():
        outputs = model(**batch)
    assert soft_target_loss(outputs.logits, outputs.targets, 0.0).item() == pytest.approx(outputs.loss.item(), rel=1e-6)
    assert soft_target_loss(outputs.logits, outputs.targets, 0.01).item() > outputs.loss.item() + 1e-3


# --- rehearsal buffers ---


def test_replay_size_rounds_to_the_nearest_with_at_least_one():
    assert [replay_size(f, 24) for f in (0.0, 0.01, 0.1, 0.125, 0.25, 1.0)] == [0, 1, 2, 3, 6, 24]
    assert replay_size(0.01, 2000) == 20


def buffer(params, data, where: Path, seed: int, stage: str, fraction: float) -> dict:
    """The ids of ``rehearsal``'s buffer for (seed, stage) at ``fraction``, built in ``where``."""
    params = copy.copy(params)
    params.methods = {"rehearsal": dataclasses.replace(params.methods["rehearsal"], replay_fraction=fraction)}
    build_replay(params, "rehearsal", seed, stage, data, where, log=lambda _: None)
    assert problems(where) == [], "the buffer is sealed"
    return read_json(where / BUFFER)["ids"]


def test_replay_buffers(tiny_suite, tmp_path):
    params, data = tiny_suite
    train_ids = {task: [s.id for s in load_split(data, [task], "train")] for task in ("image_qa", "audio_cap")}
    assert len(train_ids["image_qa"]) == 24

    third = buffer(params, data, tmp_path / "a", 0, THIRD, 0.25)
    assert list(third) == ["image_qa", "audio_cap"], "only the tasks trained before the stage"
    for task, ids in third.items():
        assert len(ids) == 6 and len(set(ids)) == 6 and set(ids) <= set(train_ids[task])
    assert buffer(params, data, tmp_path / "b", 0, THIRD, 0.25) == third, "a function of (seed, stage)"
    assert buffer(params, data, tmp_path / "c", 1, THIRD, 0.25) != third
    assert [len(ids) for ids in buffer(params, data, tmp_path / "d", 0, SECOND, 0.01).values()] == [1], "at least 1"

    rehearsal = method(params, "rehearsal")
    assert [rehearsal.required_artifacts(stage_from_key("sequential", k)) for k in (FIRST, SECOND)] == [[], ["replay"]]
    assert method(params, "finetune").required_artifacts(stage_from_key("sequential", SECOND)) == []
    with pytest.raises(ValueError, match="first stage has no buffer"):
        buffer(params, data, tmp_path / "e", 0, FIRST, 0.25)


def test_the_training_job_mixes_the_buffer_into_the_stage(tiny_suite, tmp_path):
    params, data = tiny_suite
    ids = buffer(params, data, tmp_path / "replay", 0, THIRD, 0.25)
    samples = stage_samples(data, stage_from_key("sequential", THIRD), {"replay": tmp_path / "replay"})
    assert [s.id for s in samples[:24]] == [s.id for s in load_split(data, ["video_qa"], "train")]
    assert [(s.task, s.id) for s in samples[24:]] == [(t, i) for t in ("image_qa", "audio_cap") for i in ids[t]]


def test_rehearsal_fraction_shapes_only_stages_with_a_buffer(tiny_suite):
    params, _ = tiny_suite
    first, second = stage_from_key("sequential", FIRST), stage_from_key("sequential", SECOND)
    msgm = method(params, "msgm_rehearsal")
    assert "replay_fraction" in msgm.stage_settings(second) and "soft_alpha" in msgm.stage_settings(first)
    assert "replay_fraction" not in msgm.stage_settings(first), "a fraction change does not re-run the first stage"
    assert "replay_fraction" not in method(params, "lora").stage_settings(second)


# --- what mSGM trains ---


def test_msgm_trains_lora_and_projectors_and_olf_freezes_the_last_block(tiny_suite, tiny_base):
    params, _ = tiny_suite
    trained = {}
    for name in ("msgm", "msgm_olf"):
        model, _ = load_base(tiny_base)
        msgm = method(params, name)
        msgm.prepare_model(model)
        trained[name] = set(msgm.trainable_parameters(model))
    layers = model.llm.config.num_hidden_layers
    lora = {n for n, _ in model.named_parameters() if ".lora_" in n}
    last = {n for n in lora if re.search(rf"\.layers\.{layers - 1}\.", n)}
    assert last and lora - last, "both blocks carry adapters"
    assert trained["msgm"] == lora | set(parameters_under(model, "projectors."))
    assert trained["msgm_olf"] == trained["msgm"] - last
    assert not {n for n in trained["msgm_olf"] if re.search(rf"\.layers\.{layers - 1}\.", n)}


# --- configuration and the workflow ---


def test_the_study_grid_validates_and_bad_settings_fail_at_load(params_file):
    def study(params):
        params["grid"]["methods"] = ["finetune", "soft_targets", "rehearsal", "msgm", "msgm_olf", "msgm_rehearsal"]

    command = [sys.executable, "-m", "mmcl", "validate-config", "--params", str(params_file(study))]
    ok = subprocess.run(command, env=ENV, capture_output=True, text=True)
    assert ok.returncode == 0 and "6 runs" in ok.stdout, ok.stderr
    for key, value, message in (
        ("soft_alpha", 1.0, "methods.msgm.soft_alpha: must be in [0, 1), got 1.0"),
        ("replay_fraction", 1.5, "methods.msgm.replay_fraction: must be in [0, 1], got 1.5"),
        ("base", "lroa", "methods.msgm: base 'lroa' is not a method it can build on (did you mean 'lora'?)"),
    ):
        with pytest.raises(ConfigError, match=re.escape(message)):
            load_params(params_file(lambda params, k=key, v=value: params["methods"]["msgm"].update({k: v})))


# --- the workflow ---


def planned(project: Path, *args: str) -> str:
    out = subprocess.run([str(BIN / "snakemake"), "-n", *args], cwd=project, env=ENV, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout


def outputs(plan: str) -> list[str]:
    return [line.split("output: ", 1)[1] for line in plan.splitlines() if line.strip().startswith("output: ")]


def llava_grid(params: dict) -> None:
    shrink(params)
    params["suites"]["micl-synth"]["orders"] = {"short": THIRD.split("+")}
    params["presets"] = {}
    params["grid"].update(orders=["short"], methods=["finetune", "msgm_rehearsal"])


def test_replay_jobs_are_planned_for_rehearsing_stages_after_the_first(repo_root, params_file):
    plan = planned(repo_root, "-p", "--config", f"params={params_file(llava_grid)}")
    replays = [o for o in outputs(plan) if o.endswith("/replay")]
    stages = "results/micl-synth/tiny/msgm_rehearsal/seed0/stages"
    assert set(replays) == {f"{stages}/{SECOND}/replay", f"{stages}/{THIRD}/replay"} and len(replays) == 2
    assert f"--artifact replay={stages}/{SECOND}/replay" in plan, "the stage reads its buffer"
    assert "--artifact" not in "".join(line for line in plan.splitlines() if "--method finetune" in line)


@pytest.mark.slow
def test_alpha_and_fraction_changes_rerun_only_what_they_shape(tmp_path, default_params):
    params = copy.deepcopy(default_params)
    llava_grid(params)
    params["suites"]["micl-synth"]["orders"]["short"] = SECOND.split("+")
    params["train"].update(steps=2, checkpoint_every=0)
    project = make_project(tmp_path / "project", params)
    stages = "results/micl-synth/tiny/{}/seed0/stages/{}/checkpoint"
    targets = [stages.format("finetune", FIRST), *(stages.format("msgm_rehearsal", k) for k in (FIRST, SECOND))]
    done = subprocess.run([str(BIN / "snakemake"), "--cores", "2", *targets], cwd=project, env=ENV, capture_output=True)
    assert done.returncode == 0, done.stderr[-3000:]
    assert outputs(planned(project, *targets)) == []
    log = project / f"logs/micl-synth/tiny/msgm_rehearsal/seed0/{SECOND}.train.log"
    assert "(25 samples)" in log.read_text(), "the stage's 24 samples and 1 replayed"

    def change(**settings) -> list[str]:
        edited = copy.deepcopy(params)
        edited["methods"]["msgm_rehearsal"].update(settings)
        (project / "params.yaml").write_text(yaml.safe_dump(edited, sort_keys=False))
        return sorted(outputs(planned(project, *targets)))

    replay = f"results/micl-synth/tiny/msgm_rehearsal/seed0/stages/{SECOND}/replay"
    assert change(soft_alpha=0.1) == sorted(stages.format("msgm_rehearsal", k) for k in (FIRST, SECOND))
    assert change(replay_fraction=0.5) == sorted([replay, stages.format("msgm_rehearsal", SECOND)])
