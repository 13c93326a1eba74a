"""The real backbones of params.yaml (`hf` family, hub ids) through the workflow's code path, offline: each
architecture family they use as a tiny random-init model saved locally, in place of the hub ids."""

from __future__ import annotations

import pytest
import torch
from conftest import batch_of, save_tiny_clip, save_tiny_llm, save_tiny_whisper, with_backbone

from mmcl.data.families import suite_families
from mmcl.data.records import read_jsonl, split_path
from mmcl.engine.batching import Collator
from mmcl.engine.inference import generate
from mmcl.jobs.evaluate import load_model
from mmcl.jobs.params import load_params
from mmcl.jobs.train_base import train_base
from mmcl.methods import METHODS
from mmcl.models.checkpoint import load_base, save_stage

STUDY = {  # the continual-LLaVA study's backbones: hub id of the LLM -> size label
    "EleutherAI/pythia-160m": "160M",
    "EleutherAI/pythia-410m": "410M",
    "EleutherAI/pythia-1b": "1B",
    "EleutherAI/pythia-1.4b": "1.4B",
    "EleutherAI/pythia-2.8b": "2.8B",
    "microsoft/phi-2": "2.7B",
    "lmsys/vicuna-7b-v1.5": "7B",
    "meta-llama/Llama-2-7b-hf": "7B",
}
# The architecture family (transformers model_type) of each, and an entry of params.yaml that uses it.
ARCHITECTURES = {"gpt_neox": "llava-pythia-160m", "phi": "llava-phi-2", "llama": "llava-vicuna-7b"}


def test_the_study_backbones_are_image_only_hf_entries_with_clip_336(repo_root):
    params = load_params(repo_root / "params.yaml")
    study = {name: b for name, b in params.backbones.items() if name.startswith("llava-")}
    assert {b.llm: b.size for b in study.values()} == STUDY
    for name, backbone in study.items():
        assert backbone.family == "hf", name
        assert (backbone.image_encoder, backbone.audio_encoder) == ("openai/clip-vit-large-patch14-336", None), name
        assert backbone.lm_eval.tasks() == {
            "wsc273": "nlu",
            "winogrande": "nlu",
            "arc_easy": "nlu",
            "arc_challenge": "nlu",
            "lambada_standard": "nlg",
        }, name


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_each_architecture_builds_trains_generates_and_round_trips(arch, tiny_suite, tmp_path):
    params, data = tiny_suite
    entry = ARCHITECTURES[arch]
    params = with_backbone(
        params,
        "local",
        entry,
        llm=save_tiny_llm(arch, data / "tokenizer", tmp_path / "llm"),
        image_encoder=save_tiny_clip(tmp_path / "clip"),
    )
    base = tmp_path / "base"
    train_base(params, "micl-synth", "local", data, base, log=lambda _: None)  # what `mmcl train-base` runs

    model, processor = load_base(base)
    assert model.llm.config.model_type == arch
    assert model.num_media_tokens == {"image": 5, "video": 20}, "32 px in 16 px patches + class; 4 frames concatenated"
    loss = model(**batch_of(model, processor, params, data, "image_qa")).loss
    loss.backward()
    assert torch.isfinite(loss)
    assert model.projectors["image"][0].weight.grad.abs().sum() > 0, "the image reaches the LLM through its projector"

    samples = read_jsonl(split_path(data, "image_qa", "test"))[:3]
    collator = Collator(model.tokenizer, model.num_media_tokens, suite_families(params.suites["micl-synth"]))
    answers = generate(model.eval(), processor, collator, samples, data, 3, 4, torch.device("cpu"))
    assert list(answers) == [s.id for s in samples] and all(isinstance(a, str) for a in answers.values())

    # A finetune stage's checkpoint: every LLM and projector weight it trained, reloaded as `mmcl evaluate` does.
    finetune = METHODS.get("finetune")(params.methods["finetune"])
    keys = set(finetune.trainable_parameters(model))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name in keys:
                p.add_(0.01 * torch.randn_like(p))
    save_stage(tmp_path / "stage", model, keys, {}, {"stage": "image_qa"})
    batch = batch_of(model, processor, params, data, "image_qa")
    reloaded, _ = load_model(params, "finetune", base, tmp_path / "stage")
    untrained, _ = load_model(params, None, base, None)
    with torch.no_grad():
        logits = model(**batch).logits
        assert torch.equal(reloaded.eval()(**batch).logits, logits)
        assert not torch.allclose(untrained.eval()(**batch).logits, logits)


def test_micl_backbone_adds_a_whisper_encoder(tiny_suite, tmp_path):
    params, data = tiny_suite
    params = with_backbone(
        params,
        "local",
        "micl-pythia-160m",
        llm=save_tiny_llm("gpt_neox", data / "tokenizer", tmp_path / "llm"),
        image_encoder=save_tiny_clip(tmp_path / "clip"),
        audio_encoder=save_tiny_whisper(tmp_path / "whisper"),
    )
    train_base(params, "micl-synth", "local", data, tmp_path / "base", log=lambda _: None)
    model, processor = load_base(tmp_path / "base")
    # micl-pythia-160m averages video frames; 1 s of audio at hop 320 = 50 mel frames, halved by Whisper
    assert model.num_media_tokens == {"image": 5, "video": 5, "audio": 25}
    for task in ("image_qa", "audio_cap", "video_qa"):
        assert torch.isfinite(model(**batch_of(model, processor, params, data, task)).loss), task
