"""Unified understanding + generation backbones: the embedded VQ-VAE image tokenizer and the judge (each
trained by its command), the model that reads and writes image tokens, the generation family's
prediction and score, a tiny Chameleon through the same family, and the rules that build the artifacts."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch
from conftest import build_drawing, drawing_params, save_tiny_chameleon, with_backbone
from safetensors.torch import load_file
from test_workflow import planned_jobs

from mmcl.core.io import read_json, sha256_file
from mmcl.core.registry import ConfigError
from mmcl.data.families import suite_families
from mmcl.data.records import read_jsonl, split_path
from mmcl.engine.batching import IGNORE, Collator, InstructionDataset
from mmcl.engine.inference import draw
from mmcl.jobs.evaluate import evaluate
from mmcl.jobs.image_artifacts import train_tokenizer
from mmcl.jobs.params import load_params
from mmcl.jobs.stage import StageJob
from mmcl.jobs.train_base import train_base
from mmcl.jobs.train_stage import train_stage
from mmcl.models.checkpoint import load_base
from mmcl.models.image_artifacts import as_float, read_images
from mmcl.models.judge import load_judge
from mmcl.models.unified_lm import IMAGE_END, IMAGE_START, image_vocabulary
from mmcl.models.vq import load_tokenizer

CODES = 256  # params.yaml's codebook size
GRID = 64  # 32 px images in 4 px codes: 8 x 8


@pytest.fixture(scope="session")
def drawing(tmp_path_factory, default_params):
    """The drawing suite (a few dozen samples per split), its image tokenizer and judge built by their
    commands (short trainings), and the embedded unified base model (a few stage-0 steps)."""
    return build_drawing(
        tmp_path_factory.mktemp("drawing"),
        default_params,
        tokenizer_steps=300,
        judge_steps=250,
        stage0_steps=6,
        train=128,
        test=32,
    )


def test_the_tokenizer_round_trips_images_through_codes(drawing):
    vq, settings = load_tokenizer(drawing.tokenizer)
    images = as_float(read_images(drawing.data, read_jsonl(split_path(drawing.data, "draw", "test"))))
    codes = vq.encode(images)
    assert codes.shape == (len(images), GRID) and codes.dtype == torch.long
    assert codes.min() >= 0 and codes.max() < CODES
    decoded = vq.decode(codes)
    assert decoded.shape == images.shape and decoded.min() >= 0 and decoded.max() <= 1
    # After 300 steps it already beats the best constant image (each pixel's mean) more than twice over.
    constant = (images - images.mean(0)).pow(2).mean().item()
    assert torch.nn.functional.mse_loss(decoded, images).item() < constant / 2.5
    assert settings["stats"]["mse"] < constant / 2.5  # what the artifact records: the same, on the test images


def test_the_same_seed_gives_the_same_tokenizer_bytes(drawing, tmp_path):
    config = replace(drawing.params.backbones["unified"].tokenizer, steps=3, batch_size=8)
    images = read_images(drawing.data, read_jsonl(split_path(drawing.data, "draw", "train"))[:32])
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        train_tokenizer(images, images[:8], replace(config, seed=seed), tmp_path / name, log=lambda _: None)
    weights = {name: sha256_file(tmp_path / name / "model.safetensors") for name in "abc"}
    assert weights["a"] == weights["b"] != weights["c"]


def test_the_judge_reads_real_images_far_above_chance(drawing):
    judge, settings = load_judge(drawing.judge)
    stats = settings["stats"]
    assert stats["test_images"] == 32
    chance = {"colour": 1 / 6, "shape": 1 / 4, "position": 1 / 9}  # all three: 0.5%
    assert all(stats[f"{field}_accuracy"] > 150 * p for field, p in chance.items())
    assert stats["accuracy"] > 25, "50 times chance after 250 steps"
    test = read_jsonl(split_path(drawing.data, "draw", "test"))
    read = judge.read(as_float(read_images(drawing.data, test)))
    exact = sum(r == s.answers[0] for r, s in zip(read, test, strict=True))
    assert round(exact * 100 / len(test), 2) == stats["accuracy"]


def test_image_token_range_is_exactly_the_codes_and_markers(drawing):
    model, processor = load_base(drawing.base)
    names = image_vocabulary(CODES)
    ids = model.tokenizer.convert_tokens_to_ids(names)
    assert list(model.image_token_range) == ids and len(ids) == CODES + 2
    assert (
        (ids[0], ids[-1])
        == (model.start_id, model.end_id)
        == tuple(model.tokenizer.convert_tokens_to_ids([IMAGE_START, IMAGE_END]))
    )
    text = set(model.tokenizer.get_vocab().values()) - set(ids)
    assert max(text) < model.image_token_range.start, "text tokens come first"
    image = processor.load("image", drawing.data / read_jsonl(split_path(drawing.data, "draw", "test"))[0].media[0])
    assert len(image) == model.num_media_tokens["image"] == GRID + 2
    assert image[0] == model.start_id and image[-1] == model.end_id
    assert all(token in model.image_token_range for token in image.tolist())


def test_images_are_read_in_prompts_and_written_as_targets(drawing):
    model, processor = load_base(drawing.base)
    collator = Collator(model.tokenizer, model.num_media_tokens, suite_families(drawing.params.suites["drawing"]))
    (question,) = read_jsonl(split_path(drawing.data, "image_qa", "train"))[:1]
    (drawn,) = read_jsonl(split_path(drawing.data, "draw", "train"))[:1]
    dataset = InstructionDataset([question, drawn], drawing.data, processor)
    batch = collator.train_batch([dataset[0], dataset[1]])
    assert batch["media"] == {}, "images travel as tokens, not as encoder inputs"
    image = [processor.load("image", drawing.data / s.media[0]).tolist() for s in (question, drawn)]
    ids, labels = batch["input_ids"].tolist(), batch["labels"].tolist()
    # understanding: [bos] <img> codes </img> question <answer> | answer [eos]
    assert ids[0][1 : 1 + len(image[0])] == image[0]
    assert [t for t in labels[0] if t != IGNORE] == [
        *collator._words(question.answers[0]),
        model.tokenizer.eos_token_id,
    ]
    # generation: [bos] instruction <answer> | <img> codes </img> [eos], the image only in the target
    prompt = collator.prompt_ids(drawn, dataset[1].media)
    assert not set(prompt) & set(model.image_token_range)
    assert [t for t in labels[1] if t != IGNORE] == [*image[1], model.tokenizer.eos_token_id]
    assert model(**batch).loss.isfinite()


def test_generation_writes_exactly_one_image_of_codes_and_the_judge_reads_it(drawing):
    model, processor = load_base(drawing.base)
    families = suite_families(drawing.params.suites["drawing"])
    collator = Collator(model.tokenizer, model.num_media_tokens, families)
    samples = read_jsonl(split_path(drawing.data, "draw", "test"))[:5]
    batch = collator.generation_batch([InstructionDataset(samples, drawing.data, processor)[i] for i in range(5)])
    codes = model.generate_image(batch["input_ids"], batch["attention_mask"])
    assert codes.shape == (5, GRID) and codes.min() >= 0 and codes.max() < CODES
    judge, _ = load_judge(drawing.judge)
    readings, images = draw(model, processor, collator, samples, drawing.data, 2, torch.device("cpu"), judge)
    classes = judge.classes
    for sample in samples:
        colour, shape, *place = readings[sample.id].split()
        assert (colour, shape, " ".join(place)) in {
            (c, s, p) for c in classes["colour"] for s in classes["shape"] for p in classes["position"]
        }
        assert images[sample.id].size == (32, 32)


def test_stage0_trains_drawing_and_reading_back(drawing):
    assert "stage 0: 256 samples of 'draw', 'read_back', 6 steps" in drawing.logged


def test_evaluation_scores_generation_beside_the_judge_and_keeps_the_images(drawing):
    out = drawing.root / "eval"
    scores = evaluate(
        drawing.params, suite="drawing", method=None, data_dir=drawing.data, base_dir=drawing.base,
        checkpoint=None, out_dir=out, log=lambda _: None, judge_dir=drawing.judge,
    )  # fmt: skip
    _, settings = load_judge(drawing.judge)
    assert scores["draw"]["primary"] == "gen_score"
    assert scores["draw"]["metrics"]["judge_accuracy"] == settings["stats"]["accuracy"]
    predictions = [json.loads(line) for line in (out / "predictions" / "draw.jsonl").read_text().splitlines()]
    right = sum(row["prediction"] == row["answers"][0] for row in predictions)
    assert scores["draw"]["metrics"]["gen_score"] == pytest.approx(100 * right / len(predictions))
    assert len(list((out / "generated" / "draw").glob("*.png"))) == 32
    assert read_json(out / "scores.json") == scores
    with pytest.raises(ConfigError, match="--judge"):
        evaluate(drawing.params, suite="drawing", method=None, data_dir=drawing.data, base_dir=drawing.base,
                 checkpoint=None, out_dir=out, log=lambda _: None)  # fmt: skip


def test_a_lora_stage_adapts_only_the_llm_and_the_model_still_draws(drawing):
    out = drawing.root / "stages" / "image_qa"
    job = StageJob("drawing", "unified", "lora", 0, "image_qa", drawing.data, drawing.base, None)
    train_stage(drawing.params, job, out, log=lambda _: None)
    trained = load_file(out / "model.safetensors")
    assert trained and all(".lora_" in name for name in trained), "no projectors, no image tokenizer"
    scores = evaluate(
        drawing.params, suite="drawing", method="lora", data_dir=drawing.data, base_dir=drawing.base,
        checkpoint=out, out_dir=out.parent / "eval", log=lambda _: None, judge_dir=drawing.judge,
    )  # fmt: skip
    assert set(scores) == {"draw", "image_qa"}
    assert len(list((out.parent / "eval" / "generated" / "draw").glob("*.png"))) == 32


def test_a_backbone_without_image_tokens_cannot_learn_to_draw(drawing, tiny_base):
    model, processor = load_base(tiny_base)
    collator = Collator(model.tokenizer, model.num_media_tokens, suite_families(drawing.params.suites["drawing"]))
    sample = read_jsonl(split_path(drawing.data, "draw", "train"))[0]
    item = InstructionDataset([sample], drawing.data, processor)[0]
    with pytest.raises(ValueError, match="family: unified"):
        collator.train_batch([item])


def test_a_tiny_chameleon_saves_and_loads_through_the_family(drawing, tmp_path):
    words = (drawing.data / "vocab.txt").read_text().split()
    checkpoint = save_tiny_chameleon(words, tmp_path / "chameleon", codebook_size=16)
    params = with_backbone(drawing.params, "chameleon", "anole-7b", model=checkpoint)
    base = tmp_path / "base"
    train_base(params, "drawing", "chameleon", drawing.data, base, log=lambda _: None)
    model, processor = load_base(base)
    assert type(model.llm).__name__ == "ChameleonForConditionalGeneration"
    # its tokenizer's layout: 8 specials, the 16 IMGIMG tokens, <eoss>, <racm3:break>
    assert model.image_token_range == range(8, 26) and (model.start_id, model.end_id) == (25, 24)
    assert model.tokens_per_image == 16  # 32 px, three halvings
    collator = Collator(model.tokenizer, model.num_media_tokens, suite_families(params.suites["drawing"]))
    samples = [
        *read_jsonl(split_path(drawing.data, "image_qa", "train"))[:2],
        *read_jsonl(split_path(drawing.data, "draw", "train"))[:2],
    ]
    dataset = InstructionDataset(samples, drawing.data, processor)
    batch = collator.train_batch([dataset[i] for i in range(4)])
    loss = model(**batch).loss
    assert loss.isfinite(), "image-token targets are learnable (transformers' own logit mask is lifted)"
    reloaded, _ = load_base(base)
    assert torch.equal(reloaded(**batch).logits, model(**batch).logits)
    prompts = collator.generation_batch([dataset[2], dataset[3]])
    codes = model.generate_image(prompts["input_ids"], prompts["attention_mask"])
    assert codes.shape == (2, 16) and codes.min() >= 0 and codes.max() < 16
    with pytest.raises(NotImplementedError, match="no VQ-GAN decoder"):
        processor.decode(codes)


def test_artifacts_are_planned_only_where_they_are_read(repo_root, params_file):
    def edit(params):
        drawing_params(params, tokenizer_steps=10, judge_steps=10, stage0_steps=2)
        params["presets"] = {}
        params["grid"] = {
            "suite": "drawing",
            "orders": ["qa"],
            "methods": ["lora"],
            "backbones": ["unified"],
            "seeds": [0, 1],
        }

    outputs = planned_jobs(repo_root, params_file(edit))
    assert outputs.count("results/drawing/unified/image_tokenizer") == 1
    assert outputs.count("results/drawing/judge") == 1
    assert not [o for o in planned_jobs(repo_root, params_file()) if "image_tokenizer" in o or "judge" in o]


@pytest.mark.parametrize(
    ("suite", "backbone", "message"),
    [
        ("drawing", "tiny", "backbone 'tiny' cannot generate images to judge"),
        ("drawing", "anole-7b", "backbone 'anole-7b' cannot generate images to judge"),  # no Chameleon decoder
        ("micl-synth", "unified", "backbone 'unified' learns to draw .* suite 'micl-synth' has none"),
    ],
)
def test_a_grid_whose_backbone_cannot_draw_what_the_suite_asks_fails_at_load(params_file, suite, backbone, message):
    def edit(params):
        drawing_params(params, tokenizer_steps=10, judge_steps=10, stage0_steps=2)
        orders = {"drawing": ["qa"], "micl-synth": ["img-aud-vid"]}
        params["grid"].update(suite=suite, orders=orders[suite], backbones=[backbone])

    with pytest.raises(ConfigError, match=rf"grid\.backbones\[0\]: {message}"):
        load_params(params_file(edit))
