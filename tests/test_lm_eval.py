"""lm-evaluation-harness on the LLM of a checkpoint (`mmcl lm-eval`), offline: two tiny tasks defined on
local files (one multiple choice, one LAMBADA-style last word) and a tiny Phi saved locally, whose stage
checkpoint is built so that the accuracies are known by hand. Tests that index lm_eval's own tasks
(seconds per index) are marked slow."""

from __future__ import annotations

import copy
import json

import pytest
import torch
import yaml
from conftest import save_tiny_clip, save_tiny_llm

from mmcl.cli import main
from mmcl.core.io import read_json
from mmcl.core.registry import ConfigError
from mmcl.jobs.evaluate import load_model
from mmcl.jobs.lm_eval import check_tasks, checkpoint_llm
from mmcl.jobs.params import load_params
from mmcl.jobs.train_base import train_base
from mmcl.methods import METHODS
from mmcl.models.checkpoint import load_base, save_stage

CHOICE = [  # the likeliest option of the checkpoint below is always "left": gold in 2 of 4
    {"context": "where is the red circle ?", "choices": ["left", "right"], "gold": 0},
    {"context": "where is the blue square ?", "choices": ["right", "left"], "gold": 1},
    {"context": "where is the green cross ?", "choices": ["left", "top"], "gold": 1},
    {"context": "what color is the circle ?", "choices": ["red", "left"], "gold": 0},
]
WORDS = [  # and its greedy next word is always "left": the last word of 3 of 4
    {"text": "a red circle at the top left"},
    {"text": "a blue square at the bottom left"},
    {"text": "a green cross at the middle left"},
    {"text": "a white triangle at the top right"},
]
TASK_YAML = {
    "tiny_choice": {
        "output_type": "multiple_choice",
        "doc_to_text": "{{context}}",
        "doc_to_choice": "{{choices}}",
        "doc_to_target": "{{gold}}",
    },
    "tiny_last_word": {  # as lm_eval's lambada_standard: the text without its last word, then " " + that word
        "output_type": "loglikelihood",
        "doc_to_text": "{{text.split(' ')[:-1]|join(' ')}}",
        "doc_to_target": "{{' ' + text.split(' ')[-1]}}",
    },
}


def write_tasks(where):
    """Task YAMLs on local JSONL files, as a directory for `lm_eval.include_path`."""
    where.mkdir()
    for task, docs in (("tiny_choice", CHOICE), ("tiny_last_word", WORDS)):
        (where / f"{task}.jsonl").write_text("".join(json.dumps(doc) + "\n" for doc in docs))
        spec = {
            "task": task,
            "dataset_path": "json",
            "dataset_kwargs": {"data_files": {"test": str(where / f"{task}.jsonl")}},
            "test_split": "test",
            **TASK_YAML[task],
            "metric_list": [{"metric": "acc", "aggregation": "mean", "higher_is_better": True}],
        }
        (where / f"{task}.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    return where


def write_params(path, default_params, backbone: dict):
    params = copy.deepcopy(default_params)
    params["backbones"]["local"] = backbone
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def phi(tiny_suite, tmp_path_factory, default_params):
    """A base model on a tiny Phi (the study's llava-phi-2 entry, local paths, the tiny tasks), and a
    finetune stage whose LM head always predicts "left" (Phi's head has a bias: weights 0, bias on "left")."""
    _, data = tiny_suite
    root = tmp_path_factory.mktemp("lm_eval")
    backbone = default_params["backbones"]["llava-phi-2"] | {
        "llm": str(save_tiny_llm("phi", data / "tokenizer", root / "llm")),
        "image_encoder": str(save_tiny_clip(root / "clip")),
        "lm_eval": {
            "nlu": ["tiny_choice"],
            "nlg": ["tiny_last_word"],
            "batch_size": 4,
            "include_path": str(write_tasks(root / "tasks")),
        },
    }
    params_path = write_params(root / "params.yaml", default_params, backbone)
    params = load_params(params_path)
    train_base(params, "micl-synth", "local", data, root / "base", log=lambda _: None)

    model, _ = load_base(root / "base")
    head = model.llm.lm_head
    with torch.no_grad():
        head.weight.zero_()
        head.bias.zero_()
        head.bias[model.tokenizer.convert_tokens_to_ids("left")] = 20.0
    keys = set(METHODS.get("finetune")(params.methods["finetune"]).trainable_parameters(model))
    save_stage(root / "stage", model, keys, {}, {"stage": "image_qa"})
    return {"params": params_path, "base": root / "base", "stage": root / "stage", "root": root}


@pytest.mark.slow
def test_lm_eval_scores_the_checkpoints_llm(phi, tmp_path):
    out = tmp_path / "lm_eval"
    command = ["lm-eval", "--params", str(phi["params"]), "--backbone", "local", "--base", str(phi["base"])]
    main([*command, "--method", "finetune", "--checkpoint", str(phi["stage"]), "--out", str(out)])
    scores = read_json(out / "scores.json")
    accuracy = {task: entry["metrics"]["accuracy"] for task, entry in scores["tasks"].items()}
    assert accuracy == {"tiny_choice": 50.0, "tiny_last_word": 75.0}, "the stage's LLM, not the base's"
    assert {task: (e["measure"], e["n"], e["modality"]) for task, e in scores["tasks"].items()} == {
        "tiny_choice": ("nlu", 4, "text"),
        "tiny_last_word": ("nlg", 4, "text"),
    }
    assert scores["measures"] == {"nlu": 50.0, "nlg": 75.0}  # one task each: its accuracy
    provenance = read_json(out / "provenance.json")
    assert provenance["job"]["command"] == "lm-eval" and provenance["packages"]["lm_eval"]


@pytest.mark.slow
def test_a_misspelt_task_fails_before_the_model_is_loaded(phi, default_params, tmp_path, capsys):
    backbone = yaml.safe_load(phi["params"].read_text())["backbones"]["local"]
    backbone["lm_eval"]["nlg"] = ["tiny_last_wrd"]
    params = write_params(tmp_path / "params.yaml", default_params, backbone)
    command = ["lm-eval", "--params", str(params), "--backbone", "local", "--base", str(tmp_path / "no-base")]
    with pytest.raises(SystemExit) as exit_:
        main([*command, "--out", str(tmp_path / "out")])
    assert exit_.value.code == 2
    error = capsys.readouterr().err
    assert "local.lm_eval.nlg[0]: 'tiny_last_wrd' is an unknown task (did you mean 'tiny_last_word'?)" in error
    assert "no-base" not in error and not (tmp_path / "out").exists()


@pytest.mark.slow
def test_the_study_tasks_are_tasks_of_the_installed_lm_eval(repo_root):
    from lm_eval.tasks import TaskManager

    params = load_params(repo_root / "params.yaml")
    manager = TaskManager()
    check_tasks(params.backbones["llava-pythia-160m"].lm_eval, manager, "backbones.llava-pythia-160m.lm_eval", "p")
    grouped = params.backbones["llava-pythia-160m"].lm_eval
    grouped.nlu = ["ai2_arc"]  # a tag of arc_easy and arc_challenge: several results, not one column
    with pytest.raises(ConfigError, match=r"lm_eval\.nlu\[0\]: 'ai2_arc' is a group or tag, not a task"):
        check_tasks(grouped, manager, "backbones.llava-pythia-160m.lm_eval", "p")


def test_lora_adapters_are_merged_into_the_llm(phi):
    params = load_params(phi["params"])
    model, _ = load_base(phi["base"])
    lora = METHODS.get("lora")(params.methods["lora"])
    lora.prepare_model(model)
    keys = set(lora.trainable_parameters(model))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if ".lora_B" in name:
                p.normal_()  # peft starts B at 0: the adapter would change nothing
    save_stage(phi["root"] / "lora", model, keys, {}, {"stage": "image_qa"})

    llm, _ = checkpoint_llm(params, "lora", phi["base"], phi["root"] / "lora")
    assert not hasattr(llm, "peft_config") and type(llm).__name__ == "PhiForCausalLM", "a plain transformers LLM"
    ids = model.tokenizer("a red circle at the top left", return_tensors="pt").input_ids
    unmerged, _ = load_model(params, "lora", phi["base"], phi["root"] / "lora")
    base, _ = load_model(params, None, phi["base"], None)
    with torch.no_grad():
        merged = llm.eval()(ids).logits
        assert torch.allclose(merged, unmerged.llm.eval()(ids).logits, atol=1e-5)
        assert not torch.allclose(merged, base.llm.eval()(ids).logits, atol=1e-3)


@pytest.mark.parametrize(
    ("lm_eval", "message"),
    [
        ({"nlu": [], "nlg": []}, "backbones.llava-phi-2.lm_eval: list at least one task under nlu or nlg"),
        (
            {"nlu": ["arc_easy"], "nlg": ["arc_easy"]},
            "llava-phi-2.lm_eval.nlg[0]: 'arc_easy' is already listed at backbones.llava-phi-2.lm_eval.nlu[0]",
        ),
        ({"nlu": ["text_nlu"]}, "lm_eval.nlu[0]: 'text_nlu' is also a task of suite 'llava-synth'"),
        ({"limit": 0}, "backbones.llava-phi-2.lm_eval.limit: must be > 0, got 0"),
        ({"shots": 5}, "backbones.llava-phi-2.lm_eval.shots: unknown key 'shots'; valid keys: nlu, nlg, limit"),
    ],
)
def test_lm_eval_settings_are_validated_at_load(params_file, lm_eval, message):
    def edit(params):  # a new mapping: the llava-* entries share theirs (a YAML anchor)
        entry = params["backbones"]["llava-phi-2"]
        entry["lm_eval"] = entry["lm_eval"] | lm_eval

    with pytest.raises(ConfigError) as err:
        load_params(params_file(edit))
    assert message in str(err.value)
