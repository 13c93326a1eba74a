"""Multiple choice in the common format and its likelihood scoring; llava-synth end to end on a tiny model,
its alignment stage included."""

from __future__ import annotations

import copy
import json

import pytest
import torch
import yaml
from safetensors.torch import load_file

from mmcl.cli import main
from mmcl.core.io import read_json
from mmcl.data.families import suite_families
from mmcl.data.families.last_word import LastWord
from mmcl.data.families.multiple_choice import MultipleChoice
from mmcl.data.records import DataError, Sample, read_jsonl, split_path, write_jsonl
from mmcl.engine.batching import Collator, InstructionDataset
from mmcl.engine.inference import choose, option_log_likelihoods
from mmcl.jobs.align import align
from mmcl.jobs.evaluate import evaluate
from mmcl.jobs.params import load_params
from mmcl.jobs.stage import StageJob
from mmcl.jobs.train_base import train_base
from mmcl.jobs.train_stage import train_stage
from mmcl.models.checkpoint import MANIFEST, load_base

# --- the common format ---


def test_options_round_trip_and_stay_out_of_other_samples(tmp_path):
    choice = Sample("q-0", "text_nlu", "text", "where is it ?", ["top left"], [], ["nothing", "top left"])
    plain = Sample("q-1", "vqa", "text", "what color ?", ["red"])
    write_jsonl(tmp_path / "t" / "test.jsonl", [choice, plain])
    lines = [json.loads(line) for line in (tmp_path / "t" / "test.jsonl").read_text().splitlines()]
    assert "options" in lines[0] and "options" not in lines[1]  # files without options read as before
    assert read_jsonl(tmp_path / "t" / "test.jsonl") == [choice, plain]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["top left", "nothing"], "the gold answer 'red' is not in its 'options'"),
        (["red"], "'options' needs two or more distinct strings"),
        (["red", "red"], "'options' needs two or more distinct strings"),
        ("red", "'options' must be a list of strings"),
    ],
)
def test_bad_options_name_the_file_line_and_sample(tmp_path, options, message):
    path = tmp_path / "t" / "test.jsonl"
    path.parent.mkdir()
    record = {"id": "q-0", "task": "t", "modality": "text", "instruction": "?", "answers": ["red"], "options": options}
    path.write_text(json.dumps(record) + "\n")
    with pytest.raises(DataError, match=rf"{path}:1: sample 'q-0': {message}"):
        read_jsonl(path)


def test_family_scores():
    refs = {"a": ["red circle"], "b": ["nothing"]}
    assert MultipleChoice().score({"t": ({"a": "red circle", "b": "red"}, refs)}) == {"t": {"accuracy": 50.0}}
    # LAMBADA-style: the first generated word counts, whatever follows it
    words = {"a": ["left"], "b": ["red"]}
    assert LastWord().score({"t": ({"a": "left . the", "b": "blue red"}, words)}) == {"t": {"accuracy": 50.0}}


# --- llava-synth end to end on a tiny model ---


def shrink_llava(params: dict) -> None:
    suite = params["suites"]["llava-synth"]
    suite["sizes"] = {"train": 24, "test": 8, "pretrain": 16}
    suite["orders"]["first"] = ["instruct"]
    params["backbones"]["tiny"]["encoder_pretraining"] = {"steps": {"image": 3, "audio": 3}, "batch_size": 8}
    params["backbones"]["tiny"]["stage0"] = {"steps": 4, "batch_size": 8, "lr": 3.0e-3}
    params["train"].update(steps=3, task_steps={}, batch_size=4, log_every=1)
    suite["alignment"].update(steps=3, batch_size=4)


@pytest.fixture(scope="module")
def llava(tmp_path_factory, default_params):
    """llava-synth data, its tiny base model and the base's evaluation, with the params."""
    root = tmp_path_factory.mktemp("llava")
    raw = copy.deepcopy(default_params)
    shrink_llava(raw)
    path = root / "params.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    params, data = load_params(path), root / "data" / "llava-synth"
    main(["prepare", "--params", str(path), "--suite", "llava-synth", "--out", str(data)])
    base, logged = root / "base", []
    train_base(params, "llava-synth", "tiny", data, base, log=logged.append)
    scores = evaluate(
        params, suite="llava-synth", method=None, data_dir=data, base_dir=base, checkpoint=None,
        out_dir=root / "base-eval", log=lambda _: None,
    )  # fmt: skip
    return params, data, base, root, logged, scores


def test_stage0_trains_on_both_text_tasks(llava):
    _, _, _, _, logged, _ = llava
    assert "stage 0: 48 samples of 'text_nlu', 'text_nlg', 4 steps" in logged


def by_hand(model, collator, processor, data, sample: Sample) -> list[float]:
    """Each option's log-likelihood: one unpadded forward pass per option, log-softmax summed over its tokens."""
    prompt = collator.prompt_ids(sample)
    media = {"image": processor.load("image", data / sample.media[0])[None]} if sample.media else {}
    scores = []
    for option in sample.options:
        tokens = model.tokenizer(option, add_special_tokens=False)["input_ids"]
        ids = torch.tensor([prompt + tokens])
        with torch.no_grad():
            logits = model(ids, torch.ones_like(ids), media).logits[0]
        # token k of the option is predicted at the position just before it
        scores.append(sum(torch.log_softmax(logits[len(prompt) - 1 + k], -1)[t].item() for k, t in enumerate(tokens)))
    return scores


def test_likelihood_scoring_equals_the_log_softmax_summed_by_hand(llava):
    params, data, base, _, _, _ = llava
    model, processor = load_base(base)
    model.eval()
    collator = Collator(model.tokenizer, model.num_media_tokens, suite_families(params.suites["llava-synth"]))
    image = read_jsonl(split_path(data, "vqa", "test"))[0]
    question = "scene : a red circle at the top left . question : what is at the top left ?"
    options = ["nothing", "red circle", "it is at the top left", "blue"]  # 1, 2, 5 and 1 tokens
    samples = [
        Sample("text", "text_nlu", "text", question, ["red circle"], [], options),
        Sample("image", "text_nlu", "image", image.instruction, ["red"], image.media, ["green square", "red"]),
    ]
    dataset = InstructionDataset(samples, data, processor)
    batch = collator.choice_batch([dataset[0], dataset[1]])  # six rows, padded to the longest
    expected = [by_hand(model, collator, processor, data, sample) for sample in samples]
    assert option_log_likelihoods(model, batch, torch.device("cpu")).tolist() == pytest.approx(
        expected[0] + expected[1], abs=1e-4
    )
    chosen = choose(model, processor, collator, samples, data, batch_size=2, device=torch.device("cpu"))
    assert chosen == {s.id: s.options[scores.index(max(scores))] for s, scores in zip(samples, expected, strict=True)}


def test_evaluation_scores_nlu_by_likelihood_and_nlg_by_generation(llava):
    _, data, _, root, _, scores = llava
    assert scores["text_nlu"]["family"] == "multiple_choice" and scores["text_nlg"]["family"] == "last_word"
    for task in ("text_nlu", "text_nlg"):
        predictions = [json.loads(line) for line in (root / "base-eval" / "predictions" / f"{task}.jsonl").open()]
        samples = {s.id: s for s in read_jsonl(split_path(data, task, "test"))}
        if task == "text_nlu":  # a chosen option, never free text, right when it is the gold one
            assert all(p["prediction"] in samples[p["id"]].options for p in predictions)
            right = sum(p["prediction"] == p["answers"][0] for p in predictions)
        else:  # the first generated word
            right = sum(p["prediction"].split()[:1] == p["answers"] for p in predictions)
        assert scores[task]["metrics"]["accuracy"] == pytest.approx(100 * right / len(predictions))


def test_a_stage_then_the_run_metrics(llava, tmp_path):
    params, data, base, root, _, base_scores = llava
    job = StageJob("llava-synth", "tiny", "finetune", 0, "instruct", data, base, None)
    train_stage(params, job, tmp_path / "checkpoint", log=lambda _: None)
    stage_scores = evaluate(
        params, suite="llava-synth", method="finetune", data_dir=data, base_dir=base,
        checkpoint=tmp_path / "checkpoint", out_dir=tmp_path / "eval", log=lambda _: None,
    )  # fmt: skip
    main([
        "aggregate", "--params", params.path, "--suite", "llava-synth", "--order", "first", "--backbone", "tiny",
        "--method", "finetune", "--seed", "0", "--stage-scores", str(tmp_path / "eval" / "scores.json"),
        "--zeroshot-scores", str(root / "base-eval" / "scores.json"), "--out", str(tmp_path / "run.json"),
    ])  # fmt: skip
    metrics = read_json(tmp_path / "run.json")["metrics"]
    nlu = base_scores["text_nlu"]["metrics"]["accuracy"] - stage_scores["text_nlu"]["metrics"]["accuracy"]
    nlg = base_scores["text_nlg"]["metrics"]["accuracy"] - stage_scores["text_nlg"]["metrics"]["accuracy"]
    assert metrics["nlu_delta"] == pytest.approx(nlu) and metrics["nlg_delta"] == pytest.approx(nlg)
    assert metrics["vl_score"] == pytest.approx(stage_scores["instruct"]["metrics"]["accuracy"])


def tensors(directory) -> dict[str, torch.Tensor]:
    return {k: v for file in sorted(directory.glob("*.safetensors")) for k, v in load_file(file).items()}


def test_alignment_trains_the_projector_and_leaves_the_llm_bit_for_bit(llava, tmp_path):
    params, data, base, _, _, scores = llava
    assert "caption" in params.suites["llava-synth"].tasks and "caption" not in scores  # trained, never evaluated
    aligned = tmp_path / "aligned"
    align(params, "llava-synth", "tiny", data, base, aligned, log=lambda _: None)
    for part in ("llm", "image_encoder"):
        before, after = tensors(base / part), tensors(aligned / part)
        assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before), part
    before, after = (load_file(d / "projectors.safetensors") for d in (base, aligned))
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed == {k for k in before if k.startswith("image.")} and changed
    manifest = read_json(aligned / MANIFEST)
    assert manifest["alignment"]["task"] == "caption" and len(manifest["alignment"]["losses"]) == 3
    assert read_json(aligned / "provenance.json")["job"]["command"] == "align"
