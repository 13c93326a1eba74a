"""llava-synth generator: determinism, answers that match the pixels, conversations that need the
image, multiple-choice and last-word text tasks in the common format."""

from __future__ import annotations

import re
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw
from test_micl_synth import file_digests, objects_in

from mmcl.config.schema import SplitSizes, SuiteConfig, TaskConfig, WorldConfig
from mmcl.core.registry import ConfigError
from mmcl.data import GENERATORS
from mmcl.data.generators.llava_synth import TASKS, LlavaSynth
from mmcl.data.generators.micl_synth import parse_scene_caption
from mmcl.data.generators.micl_world import SIGN_SCALE, SIGN_WORDS, sign_font
from mmcl.data.records import perception_path, read_jsonl, split_path

WORLD = WorldConfig(image_size=48, max_objects=2)
ALL_TASKS = {name: TaskConfig(family, modality) for name, (family, modality) in TASKS.items()}


def make_suite(seed: int = 0, train: int = 60, test: int = 20, pretrain: int = 0, tasks=None, **world) -> SuiteConfig:
    return SuiteConfig(
        generator="llava_synth",
        seed=seed,
        sizes=SplitSizes(train, test, pretrain),
        world=WorldConfig(**{"image_size": 48, "max_objects": 2, **world}),
        tasks=dict(tasks or ALL_TASKS),
    )


def samples_of(root: Path, task: str):
    return [sample for split in ("train", "test") for sample in read_jsonl(split_path(root, task, split))]


@pytest.fixture(scope="module")
def suite_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("llava")
    LlavaSynth(make_suite(pretrain=40)).generate(root)
    return root


def test_registered_under_its_name():
    assert GENERATORS.get("llava_synth") is LlavaSynth


def test_same_seed_same_bytes_and_other_seed_other_data(suite_dir, tmp_path):
    LlavaSynth(make_suite(pretrain=40)).generate(tmp_path / "again")
    LlavaSynth(make_suite(seed=1, pretrain=40)).generate(tmp_path / "other")
    first, again, other = (file_digests(p) for p in (suite_dir, tmp_path / "again", tmp_path / "other"))
    assert first == again
    assert other.keys() == first.keys()
    assert sum(first[p] != other[p] for p in first) > 0.9 * len(first)


def test_unknown_or_mistyped_tasks_raise_config_error():
    with pytest.raises(ConfigError, match=r"llava_synth task 'vqq': not a task it writes \(did you mean 'vqa'\?\)"):
        LlavaSynth(make_suite(tasks={"vqq": TaskConfig("qa", "image")}))
    with pytest.raises(ConfigError, match=r"'text_nlu': is \(multiple_choice, text\), got \(qa, text\)"):
        LlavaSynth(make_suite(tasks={"text_nlu": TaskConfig("qa", "text")}))
    with pytest.raises(ConfigError, match="llava_synth world: image_size"):
        LlavaSynth(make_suite(image_size=16))
    with pytest.raises(ConfigError, match=r"llava_synth world: references_per_caption must be 1\.\.4, got 5"):
        LlavaSynth(make_suite(references_per_caption=5))


def test_only_the_image_encoder_gets_a_perception_set_of_scenes_and_signs(suite_dir):
    assert not perception_path(suite_dir, "audio").exists()
    tags = [set(sample.answers) for sample in read_jsonl(perception_path(suite_dir, "image"))]
    signs = [t for t in tags if any(tag.startswith("word:") for tag in t)]
    assert 0.25 * len(tags) <= len(signs) <= 0.75 * len(tags)
    assert all(any(tag.startswith("count:") for tag in t) for t in tags if t not in signs)


# --- answers read off the pixels ---------------------------------------------------------------


def ink(image: np.ndarray) -> np.ndarray:
    """Mask of the sign's letters, cropped to them (the background is one dark colour)."""
    mask = np.any(image != image[0, 0], axis=2)
    rows, columns = np.nonzero(mask)
    return mask[rows.min() : rows.max() + 1, columns.min() : columns.max() + 1]


def written(word: str) -> np.ndarray:
    """The word's ink as the font draws it, each pixel enlarged to a SIGN_SCALE square."""
    canvas = Image.new("L", (40, 20), 0)
    ImageDraw.Draw(canvas).text((2, 2), word, fill=255, font=sign_font())
    letters = ink(np.stack([np.asarray(canvas)] * 3, axis=2))
    return letters.repeat(SIGN_SCALE, axis=0).repeat(SIGN_SCALE, axis=1)


def test_ocr_answer_is_the_word_on_the_sign(suite_dir):
    for sample in samples_of(suite_dir, "ocr"):
        with Image.open(suite_dir / sample.media[0]) as image:
            letters = ink(np.asarray(image.convert("RGB")))
        readings = [word for word in SIGN_WORDS if written(word).shape == letters.shape]
        matches = [word for word in readings if (written(word) == letters).all()]
        assert matches == sample.answers, sample.id


def referent(phrase: str, objects: dict) -> tuple[str, str]:
    """The (row, column) of the one object a naming phrase picks out."""
    if match := re.fullmatch(r"the object at the (\w+) (\w+)", phrase):
        return match.groups()
    words = phrase.split()[1:]  # "the red circle", "the circle", "the red object"
    hits = [place for place, (color, shape) in objects.items() if set(words) - {"object"} <= {color, shape}]
    assert len(hits) == 1, (phrase, objects)
    return hits[0]


def test_captions_describe_every_object_of_the_scene(suite_dir):
    """The alignment data: the world's scene descriptions, as many paraphrases as the world asks for."""
    for sample in samples_of(suite_dir, "caption"):
        assert sample.instruction == "describe the image ." and len(set(sample.answers)) == WORLD.references_per_caption
        objects = objects_in(suite_dir / sample.media[0])
        scene = parse_scene_caption(sample.answers[0])
        assert {tuple(obj.place.split()): (obj.color, obj.shape) for obj in scene} == objects, sample.id
        for paraphrase in sample.answers[1:]:  # each names every object, in other words
            assert all({obj.color, obj.shape, *obj.place.split()} <= set(paraphrase.split()) for obj in scene)


def test_ref_answers_name_the_cell_of_the_object(suite_dir):
    for sample in samples_of(suite_dir, "ref"):
        objects = objects_in(suite_dir / sample.media[0])
        phrase = re.fullmatch(r"(?:where is|find|point to) (.+) [?.]", sample.instruction).group(1)
        assert [" ".join(referent(phrase, objects))] == sample.answers, sample.id


def test_vqa_answers_match_the_pixels(suite_dir):
    counts = ("zero", "one", "two")
    for sample in samples_of(suite_dir, "vqa"):
        objects = objects_in(suite_dir / sample.media[0])
        if sample.instruction == "how many shapes are there ?":
            expected = counts[len(objects)]
        else:
            subject = re.fullmatch(r"what (?:color|shape) is (.+) \?", sample.instruction).group(1)
            color, shape = objects[referent(subject, objects)]
            expected = color if sample.instruction.startswith("what color") else shape
        assert sample.answers == [expected], sample.id


def test_conversations_refer_back_and_never_ask_what_was_said(suite_dir):
    samples = samples_of(suite_dir, "instruct")
    ends_with_it = 0
    for sample in samples:
        objects = objects_in(suite_dir / sample.media[0])
        turns = re.findall(r"user : (.+?) \?(?: assistant : (.+?))?(?= user|$)", sample.instruction)
        assert len(turns) in (2, 3) and turns[-1][1] == "", sample.id
        said: dict[tuple[str, str], list[str]] = {}  # what the conversation said about each object
        focus = None
        for number, (question, reply) in enumerate(turns):
            asked, subject = re.fullmatch(r"(what color|what shape|where) is (.+)", question).groups()
            if subject == "it":
                assert focus is not None, sample.id
            else:
                focus = referent(subject, objects)
                said.setdefault(focus, []).append(subject)
            color, shape = objects[focus]
            value = {"what color": color, "what shape": shape, "where": " ".join(focus)}[asked]
            expected = {"what color": f"it is {color}", "what shape": f"it is a {shape}"}.get(
                asked, f"it is at the {value}"
            )
            if number < len(turns) - 1:
                assert reply == expected, sample.id
                said[focus].append(reply)
            else:
                assert sample.answers == [expected], sample.id
                assert not re.search(rf"\b{value}\b", " ".join(said[focus])), sample.id  # only the image tells
                ends_with_it += subject == "it"
    assert 0.2 * len(samples) < ends_with_it < 0.8 * len(samples)


# --- text-only tasks ---------------------------------------------------------------------------


def test_nlu_is_multiple_choice_with_the_gold_anywhere(suite_dir):
    samples = samples_of(suite_dir, "text_nlu")
    positions = Counter()
    for sample in samples:
        assert sample.media == [] and 2 <= len(set(sample.options)) == len(sample.options) <= 4, sample.id
        positions[sample.options.index(sample.answers[0])] += 1
        assert sample.instruction.split(" . question : ")[0].split(" : ")[0] in ("scene", "audio", "clip")
    assert len(positions) >= 3 and max(positions.values()) < 0.5 * len(samples)
    lengths = {len(option.split()) for sample in samples for option in sample.options}
    assert lengths == {1, 2}  # e.g. "nothing" beside "red circle": scoring must sum, not average, per token


def test_nlg_last_word_is_given_away_by_the_passage(suite_dir):
    for sample in samples_of(suite_dir, "text_nlg"):
        (word,) = sample.answers
        description, sentence = sample.instruction.rsplit(" . ", 1)
        assert word in description.split() and sentence.split()[-1] != word, sample.id


def test_vocab_has_every_word_of_instructions_answers_and_options(suite_dir):
    vocab = set((suite_dir / "vocab.txt").read_text().split())
    for task in TASKS:
        for sample in samples_of(suite_dir, task):
            for text in (sample.instruction, *sample.answers, *(sample.options or ())):
                assert set(text.split()) <= vocab, sample.id


def test_default_sizes_generate_quickly(tmp_path):
    started = time.perf_counter()
    summary = LlavaSynth(make_suite(train=2000, test=100, pretrain=2000)).generate(tmp_path)
    assert time.perf_counter() - started <= 30
    assert summary["perception"] == {"image": 2000}
    assert {name: task["splits"]["train"]["samples"] for name, task in summary["tasks"].items()} == dict.fromkeys(
        TASKS, 2000
    )
