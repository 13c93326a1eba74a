"""MoInCL and the cached-teacher mechanism: KL terms, when pseudo targets apply, cached = live teacher,
and which jobs a change of a loss weight re-runs."""

from __future__ import annotations

import copy
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from conftest import make_project, tiny_grid

from mmcl.core.plan import plan_stages
from mmcl.engine.distill import Distiller, DistillSet, fixed_target, teach, topk_kl
from mmcl.methods.moincl import old_task_type
from mmcl.models.mllm import supervised_rows

BIN = Path(sys.executable).parent
ENV = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}


def softmax(xs):
    exps = [math.exp(x) for x in xs]
    return [e / sum(exps) for e in exps]


def test_topk_kl_by_hand():
    student = torch.tensor([[1.0, 2.0, 3.0], [0.0, 0.0, 1.0]])
    teacher = torch.tensor([[3.0, 1.0, 0.0], [2.0, 0.0, 1.0]])
    T = 2.0
    values, indices = teacher.topk(2, dim=-1)  # row 0: tokens 0, 1; row 1: tokens 0, 2
    expected = 0.0
    for row, tokens in enumerate(indices.tolist()):
        p = softmax([teacher[row, t].item() / T for t in tokens])
        q = softmax([student[row, t].item() / T for t in tokens])
        expected += sum(pi * (math.log(pi) - math.log(qi)) for pi, qi in zip(p, q, strict=True))
    expected = T**2 * expected / 2
    assert topk_kl(student, values, indices, T).item() == pytest.approx(expected, rel=1e-6)

    # With K = the vocabulary it is the full KL, as torch computes it.
    full = topk_kl(student, teacher, torch.arange(3).expand(2, 3), T)
    reference = torch.nn.functional.kl_div(
        torch.log_softmax(student / T, -1), torch.log_softmax(teacher / T, -1), log_target=True, reduction="batchmean"
    )
    assert full.item() == pytest.approx(T**2 * reference.item(), rel=1e-6)
    assert topk_kl(teacher, values, indices, T).item() == pytest.approx(0.0, abs=1e-7)


class Context:
    def __init__(self, suite, stage):
        self.suite, self.stage = suite, stage


@pytest.mark.parametrize(
    "order, expected",
    [
        # The paper's order 1 and 2 on the embedded tasks: PTGM where a modality's other task type was learned.
        (
            ["audio_cap", "image_cap", "video_qa", "audio_qa", "image_qa", "video_cap"],
            {"audio_qa": "audio_cap", "image_qa": "image_cap", "video_cap": "video_qa"},
        ),
        (
            ["image_cap", "video_cap", "video_qa", "image_qa", "audio_cap", "audio_qa"],
            {"video_qa": "video_cap", "image_qa": "image_cap", "audio_qa": "audio_cap"},
        ),
    ],
)
def test_pseudo_targets_only_where_the_modality_saw_the_other_task_type(tiny_suite, order, expected):
    params, _ = tiny_suite
    suite = params.suites["micl-synth"]
    found = {s.tasks[-1]: old_task_type(Context(suite, s)) for s in plan_stages("sequential", order)}
    assert {task: old for task, old in found.items() if old} == expected


@pytest.fixture(scope="module")
def teacher_and_student(tiny_suite, tiny_base):
    """The base model as a teacher, and a student whose LLM weights were nudged away from it."""
    from mmcl.data.families import suite_families
    from mmcl.data.records import load_split
    from mmcl.engine.batching import Collator, InstructionDataset
    from mmcl.models.checkpoint import load_base

    params, data = tiny_suite
    teacher, processor = load_base(tiny_base)
    student, _ = load_base(tiny_base)
    torch.manual_seed(0)
    with torch.no_grad():
        for p in student.llm.parameters():
            p.add_(0.05 * torch.randn_like(p))
    collator = Collator(
        teacher.tokenizer, teacher.num_media_tokens, suite_families(params.suites["micl-synth"]), seed=1
    )
    samples = [fixed_target(s, s.answers[0]) for s in load_split(data, ["image_cap"], "train")[:6]]
    return teacher.eval(), student.eval(), collator, InstructionDataset(samples, data, processor)


def test_cached_teacher_outputs_give_the_live_teacher_loss(teacher_and_student, tmp_path):
    teacher, student, collator, dataset = teacher_and_student
    vocab = teacher.llm.config.vocab_size
    teach(teacher, dataset.samples, dataset, collator, k=vocab).save(tmp_path, "set")
    cached = DistillSet.load(tmp_path, "set", dataset.data_dir)
    distiller = Distiller(cached, dataset, collator, seed=0)
    picks = distiller.picks(step=3, count=4)
    batch = distiller.batch(picks, torch.device("cpu"))
    with torch.no_grad():
        student_out = student(**batch)
        live = teacher(batch["input_ids"], batch["attention_mask"], media=batch["media"]).logits
    # The rows distilled on: the positions that predict a target token, not the prompt's or the media's.
    rows = supervised_rows(batch["labels"])
    assert 0 < rows.sum() < batch["attention_mask"].sum() / 2
    every_token = torch.arange(vocab).expand(int(rows.sum()), vocab)
    expected = topk_kl(student_out.logits, live[rows], every_token, 5.0)
    assert expected.item() > 1e-3, "the nudged student must differ from the teacher"
    assert distiller.kl(student_out, picks, 5.0).item() == pytest.approx(expected.item(), rel=1e-4)


def planned(project: Path) -> list[str]:
    out = subprocess.run([str(BIN / "snakemake"), "-n"], cwd=project, env=ENV, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    return [line.split("output: ", 1)[1] for line in out.stdout.splitlines() if line.strip().startswith("output: ")]


@pytest.mark.slow
def test_changing_a_loss_weight_reuses_teachers_of_unchanged_prefixes(tmp_path, default_params):
    params = copy.deepcopy(default_params)
    tiny_grid(params)
    params["suites"]["micl-synth"]["orders"] = {"short": ["image_cap", "image_qa", "audio_cap"]}
    params["methods"]["moincl"].update(pool=8, top_k=8)
    params["grid"]["methods"] = ["lora", "moincl"]
    params["train"].update(steps=4, checkpoint_every=0)
    project = make_project(tmp_path / "project", params)
    command = [str(BIN / "snakemake"), "--cores", "2"]
    done = subprocess.run(command, cwd=project, env=ENV, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    assert planned(project) == []

    params["methods"]["moincl"]["ptgm"] = {"weight": 0.9}
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    jobs = planned(project)
    print("\n".join(["after changing methods.moincl.ptgm.weight, `snakemake -n` plans:", *jobs]))
    stages = "results/micl-synth/tiny/moincl/seed0/stages"
    assert f"{stages}/image_cap+image_qa/checkpoint" in jobs
    assert f"{stages}/image_cap+image_qa+audio_cap/teacher" in jobs, "the teacher after a changed stage re-runs"
    assert f"{stages}/image_cap/checkpoint" not in jobs, "the first stage does not use the weight"
    assert f"{stages}/image_cap+image_qa/teacher" not in jobs, "its teacher (the first stage) is unchanged"
    assert not [job for job in jobs if "/lora/" in job], "other methods are untouched"


def test_ikd_distils_on_a_natural_instructions_file(teacher_and_student, tmp_path):
    """Real runs give IKD a Natural-Instructions task file; its instances become the cached text pool."""
    import json

    from mmcl.data.records import DataError
    from mmcl.methods.base import StageContext
    from mmcl.methods.moincl import IKDConfig, MoInCL, MoInCLConfig, PTGMConfig

    teacher, _, collator, dataset = teacher_and_student
    task = {
        "Definition": ["Name the colour of the shape."],
        "Instances": [{"input": f"the {c} circle", "output": [c]} for c in ("red", "blue", "green")],
    }
    (tmp_path / "task001_colours.json").write_text(json.dumps(task))
    ikd = IKDConfig(instructions=str(tmp_path))
    method = MoInCL(MoInCLConfig(type="moincl", ptgm=PTGMConfig(enabled=False), ikd=ikd))
    assert str(tmp_path) in str(method.teacher_settings()), "another instruction file re-runs the teachers"
    context = StageContext(stage=None, dataset=dataset, collator=collator, suite=None)
    method.teach(teacher, context, tmp_path / "out")
    cached = DistillSet.load(tmp_path / "out", "ikd", dataset.data_dir)
    assert [s.instruction for s in cached.samples] == [f"Name the colour of the shape. the {c} circle" for c in
                                                        ("red", "blue", "green")]  # fmt: skip
    assert [s.answers for s in cached.samples] == [["red"], ["blue"], ["green"]]

    (tmp_path / "task002_broken.json").write_text(json.dumps({"Definition": ["x"]}))
    with pytest.raises(DataError, match=r"task002_broken\.json: not a Natural-Instructions task"):
        method.teach(teacher, context, tmp_path / "out2")
