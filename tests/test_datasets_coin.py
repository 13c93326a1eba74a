"""MoDE's datasets (CoIN's instruction data and the image-generation prompts), end to end on small fixtures.

As in test_datasets.py: each source's layout with real PNG/JPEG images, packed as its real URL packs it
and served from 127.0.0.1 (ImageNet, behind a login, is placed at its `path`), through `mmcl download`,
`mmcl extract` and `mmcl convert`; the converted samples are checked and their media decode.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml
from conftest import Source, as_json, converts, dataset_entry, fails, image, sha256, write_params, zipped

from mmcl.core.registry import ConfigError
from mmcl.data.records import read_jsonl
from mmcl.jobs.params import load_params

LETTER_PROMPT = "Answer with the option's letter from the given choices directly."


def scienceqa() -> Source:
    def problem(split, question, choices, answer, hint="", image="image.png"):
        return {
            "question": question,
            "choices": choices,
            "answer": answer,
            "hint": hint,
            "image": image,
            "split": split,
            "lecture": "",
            "solution": "",
            "task": "closed choice",
        }

    problems = {
        "1": problem("train", "Which animal's feet stick to smooth surfaces?", ["tiger", "tokay gecko"], 1),
        "2": problem("train", "Capital of Utah?", ["Salt Lake City", "Denver", "Boise"], 0, "A map."),
        "3": problem("train", "Which word is a noun?", ["run", "table"], 1, image=None),  # text only: not converted
        "4": problem("val", "Which is a solid?", ["milk", "ice"], 1),
        "5": problem("val", "Which is a gas?", ["steam", "rock"], 0),  # its image is not in val.zip
        "6": problem("test", "Pick the last.", ["v", "w", "x", "y", "z"], 4),
    }
    return Source(
        "scienceqa",
        {"adapter": "scienceqa", "licence": "test"},
        {
            "problems.json": (as_json(problems), "none"),
            # every image is image.png, in a folder named by its problem
            "train.zip": (
                zipped({"train/1/image.png": image(40, "PNG"), "train/2/image.png": image(80, "PNG")}),
                "zip",
            ),
            "val.zip": (zipped({"val/4/image.png": image(120, "PNG")}), "zip"),
            "test.zip": (zipped({"test/6/image.png": image(160, "PNG")}), "zip"),
        },
        expected={
            "train": {
                "1": (f"Which animal's feet stick to smooth surfaces? A. tiger B. tokay gecko {LETTER_PROMPT}", ["B"]),
                "2": (
                    f"Context: A map. Capital of Utah? A. Salt Lake City B. Denver C. Boise {LETTER_PROMPT}",
                    ["A"],
                ),
            },
            "val": {"4": (f"Which is a solid? A. milk B. ice {LETTER_PROMPT}", ["B"])},
            "test": {"6": (f"Pick the last. A. v B. w C. x D. y E. z {LETTER_PROMPT}", ["E"])},
        },
        skipped={"missing media": 1},
    )


QUESTION = "What is the object in the image?"


def imagenet() -> Source:
    """Kaggle's archive layout: train images in synset folders, val images in one folder with a labels file."""
    members = {
        "LOC_synset_mapping.txt": b"n01440764 tench, Tinca tinca\nn01443537 goldfish, Carassius auratus\n",
        "LOC_val_solution.csv": b"ImageId,PredictionString\n"
        b"ILSVRC2012_val_00000001,n01443537 10 20 30 40 n01443537 1 2 3 4\n"
        b"ILSVRC2012_val_00000002,n01440764 5 5 9 9\n",
        "ILSVRC/Data/CLS-LOC/train/n01440764/n01440764_10026.JPEG": image(30),
        "ILSVRC/Data/CLS-LOC/train/n01443537/n01443537_2.JPEG": image(70),
        "ILSVRC/Data/CLS-LOC/val/ILSVRC2012_val_00000001.JPEG": image(110),
        "ILSVRC/Data/CLS-LOC/val/ILSVRC2012_val_00000003.JPEG": image(150),  # no label: skipped
        "ILSVRC/Data/CLS-LOC/test/ILSVRC2012_test_00000001.JPEG": image(190),  # unlabelled test set: left out
    }
    return Source(
        "imagenet",
        {"adapter": "imagenet", "licence": "test", "manual": "download it from Kaggle"},
        {"imagenet-object-localization-challenge.zip": (zipped(members), "zip")},
        by_hand={"imagenet-object-localization-challenge.zip"},
        expected={
            "train": {
                "n01440764_10026": (QUESTION, ["tench", "Tinca tinca"]),
                "n01443537_2": (QUESTION, ["goldfish", "Carassius auratus"]),
            },
            "test": {"ILSVRC2012_val_00000001": (QUESTION, ["goldfish", "Carassius auratus"])},
        },
        skipped={"no answer": 1},
    )


UNANSWERABLE = (
    "When the provided information is insufficient, respond with 'Unanswerable'. "
    "Answer the question using a single word or phrase."
)


def vizwiz() -> Source:
    def entry(image, question, answers):
        return {
            "image": image,
            "question": question,
            "answers": [{"answer": a, "answer_confidence": "yes"} for a in answers],
            "answerable": int(answers[0] != "unanswerable"),
            "answer_type": "other",
        }

    train = [
        entry("VizWiz_train_00000000.jpg", "What is this?", ["basil"] * 3 + ["basil leaves"] * 6 + ["spice"]),
        entry("VizWiz_train_00000001.jpg", "What color is this shirt?", ["unanswerable"] * 7 + ["blue"] * 3),
    ]
    val = [entry("VizWiz_val_00000000.jpg", "What does this say?", ["unanswerable"] * 10)]
    test = [{"image": "VizWiz_test_00000000.jpg", "question": "What is it?"}]  # answers withheld: not read
    annotations = {"Annotations/train.json": as_json(train), "Annotations/val.json": as_json(val)}
    train_images = {f"train/VizWiz_train_0000000{i}.jpg": image(50 * i + 20) for i in (0, 1)}
    return Source(
        "vizwiz",
        {"adapter": "vizwiz", "licence": "test"},
        {
            "Annotations.zip": (zipped(annotations | {"Annotations/test.json": as_json(test)}), "zip"),
            "train.zip": (zipped(train_images), "zip"),
            "val.zip": (zipped({"val/VizWiz_val_00000000.jpg": image(200)}), "zip"),
        },
        expected={
            "train": {
                "VizWiz_train_00000000": (
                    f"What is this? {UNANSWERABLE}",
                    ["basil leaves"] * 6 + ["basil"] * 3 + ["spice"],
                ),
                "VizWiz_train_00000001": (
                    f"What color is this shirt? {UNANSWERABLE}",
                    ["unanswerable"] * 7 + ["blue"] * 3,
                ),
            },
            "test": {"VizWiz_val_00000000": (f"What does this say? {UNANSWERABLE}", ["unanswerable"] * 10)},
        },
    )


def customconcept101() -> Source:
    def concept(name, folder, prompts):
        return {
            "instance_prompt": f"photo of a <new1> {name}",
            "class_prompt": name,
            "instance_data_dir": f"./benchmark_dataset/{folder}",
            "prompt_filename": prompts,
        }

    concepts = [
        concept("cat", "pet_cat1", "prompts/cat.txt"),
        concept("barn", "scene_barn", "prompts/barn.txt"),
        concept("chair", "furniture_chair1", "prompts/chair.txt"),  # no such prompt file: skipped
        concept("bear", "toy_bear", "prompts/cat.txt"),  # no photos: skipped
    ]
    repo = "custom-diffusion-c9c8be2/customconcept101"
    prompts = {
        f"{repo}/dataset.json": as_json(concepts),
        f"{repo}/prompts/cat.txt": b"photo of a {}.\n{} swimming in a pool.\nA sad {}.\n",
        f"{repo}/prompts/barn.txt": b"photo of a {}.\n\n{} in snowy ice.\n",
    }
    photos = {  # photo names repeat across concepts; a concept's target is its first photo by name
        "benchmark_dataset/pet_cat1/1.jpeg": image(20),
        "benchmark_dataset/pet_cat1/0.jpeg": image(60),
        "benchmark_dataset/scene_barn/0.jpeg": image(100),
        "benchmark_dataset/furniture_chair1/0.jpeg": image(140),
    }
    caption = "describe the image."
    return Source(
        "customconcept101",
        {"adapter": "customconcept", "prompts": 2, "licence": "test"},
        {"custom-diffusion.zip": (zipped(prompts), "zip"), "benchmark_dataset.zip": (zipped(photos), "zip")},
        expected={
            "test": {
                "pet_cat1-0": (caption, ["photo of a cat."]),
                "pet_cat1-1": (caption, ["cat swimming in a pool."]),
                "scene_barn-0": (caption, ["photo of a barn."]),
                "scene_barn-1": (caption, ["barn in snowy ice."]),
            }
        },
        skipped={"no answer": 1, "missing media": 2},  # the chair once; the bear once per prompt
    )


SOURCES = [scienceqa, imagenet, vizwiz, customconcept101]


@pytest.mark.parametrize("make", SOURCES, ids=lambda make: make.__name__)
def test_adapter_converts_its_source_through_the_rules_commands(make, tmp_path, default_params, processor, capsys):
    converts(make(), tmp_path, default_params, processor, capsys)


def test_scienceqa_images_all_called_image_png_stay_apart(tmp_path, default_params, processor, capsys):
    data = converts(scienceqa(), tmp_path, default_params, processor, capsys)
    [first, second] = read_jsonl(data / "train.jsonl", data)
    assert (first.media, second.media) == (["media/1-image.png"], ["media/2-image.png"])
    assert (data / first.media[0]).read_bytes() == image(40, "PNG")
    assert (data / second.media[0]).read_bytes() == image(80, "PNG")


def test_each_concept_prompt_targets_the_concepts_first_photo(tmp_path, default_params, processor, capsys):
    data = converts(customconcept101(), tmp_path, default_params, processor, capsys)
    samples = read_jsonl(data / "test.jsonl", data)
    media = {sample.id.removeprefix("customconcept101-test-"): sample.media for sample in samples}
    assert media == {  # photo names repeat across concepts: each is linked under its concept's name
        "pet_cat1-0": ["media/pet_cat1-0.jpeg"],
        "pet_cat1-1": ["media/pet_cat1-0.jpeg"],
        "scene_barn-0": ["media/scene_barn-0.jpeg"],
        "scene_barn-1": ["media/scene_barn-0.jpeg"],
    }
    assert (data / "media/pet_cat1-0.jpeg").read_bytes() == image(60)  # 0.jpeg, though 1.jpeg came first
    assert (data / "media/scene_barn-0.jpeg").read_bytes() == image(100)


def test_imagenet_not_placed_says_where_and_what_is_checked(tmp_path, default_params, capsys):
    source = imagenet()
    file = "imagenet-object-localization-challenge.zip"
    entry = dataset_entry(source, "http://unused", tmp_path)
    entry["manual"] = default_params["datasets"]["imagenet"]["manual"]  # the repository's instructions
    path = entry["files"][file]["path"]
    Path(path).unlink()  # not placed yet
    params = write_params(tmp_path, default_params, {"imagenet": entry})
    out = tmp_path / "downloads/imagenet" / file
    err = fails(capsys, "download", "--params", params, "--dataset", "imagenet", "--file", file, "--out", out)
    assert f"datasets.imagenet.files.{file}: {path} does not exist, and this file is not downloaded" in err
    assert f"Put it at {path}" in err and f"it will be checked against SHA-256 {sha256(source.files[file][0])}" in err
    assert entry["manual"] in err
    for named in ("kaggle competitions download -c imagenet-object-localization-challenge", "LOC_synset_mapping.txt"):
        assert named in entry["manual"]  # where to get it, and what the conversion reads
    assert not out.exists()


def test_an_evaluation_set_is_no_task(default_params, tmp_path):
    params = copy.deepcopy(default_params)
    tasks = params["suites"]["mode-real"]["tasks"]
    tasks["concepts"] = {"family": "captioning", "modality": "image", "dataset": "customconcept101"}
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    with pytest.raises(ConfigError) as err:
        load_params(path)
    assert "suites.mode-real.tasks.concepts.dataset: dataset 'customconcept101' is an evaluation set" in str(err.value)
    assert "writes only test" in str(err.value)


@pytest.mark.parametrize(
    "dataset, error",
    [
        ("llava_algn", "methods.mode: unknown dataset 'llava_algn' (did you mean 'llava_align'?)"),
        ("customconcept101", "methods.mode: reads the train split of dataset 'customconcept101', which holds image"),
        ("vizwiz", "which holds image qa (adapter vizwiz: train, test); name a dataset of image captioning"),
    ],
)
def test_modes_image_text_pairs_are_a_captioning_train_split(default_params, tmp_path, dataset, error):
    """`kd.dataset` (MoDE's distillation on real pairs) is checked at load, as a task's dataset is."""
    params = copy.deepcopy(default_params)
    params["methods"]["mode"]["kd"]["dataset"] = dataset
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    with pytest.raises(ConfigError) as err:
        load_params(path)
    assert error in str(err.value)
    params["methods"]["mode"]["kd"]["weight"] = 0.0  # no distillation: nothing read
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    load_params(path)


def test_mode_on_a_suite_without_generation_tasks_needs_image_text_pairs(default_params, tmp_path):
    params = copy.deepcopy(default_params)
    params["grid"] = {"suite": "mode-real", "orders": ["coin"], "methods": ["mode"], "backbones": ["anole-7b"]}
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    error = r"grid.methods\[0\]: method 'mode' on suite 'mode-real': .* has none; .*kd.dataset"
    with pytest.raises(ConfigError, match=error):
        load_params(path)  # at load, not hours into the run


def test_repository_params_define_the_mode_suite(repo_root):
    params = load_params(repo_root / "params.yaml")
    mode = params.suites["mode-real"]
    assert mode.orders["coin"] == ["scienceqa", "textvqa", "imagenet", "gqa", "vizwiz"]  # CoIN's order
    assert {task: config.metric for task, config in mode.tasks.items()} == {
        "scienceqa": None,
        "textvqa": "vqa",
        "imagenet": None,
        "gqa": None,
        "vizwiz": "vqa",
    }
    files = params.datasets["imagenet"].files
    assert [source.url for source in files.values()] == [None] and params.datasets["imagenet"].manual
    assert params.datasets["customconcept101"].prompts == 1  # MoDE's 101 prompts, one per concept
