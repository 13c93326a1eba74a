"""mode-synth generator: determinism, records in the common format, answers that match the pixels
(lettered options, relations, unanswerable views, draw targets), and the suite in params.yaml."""

from __future__ import annotations

import re
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from test_llava_synth import ink, referent, written
from test_micl_synth import COLUMNS, ROWS, file_digests, objects_in, pixels_of

from mmcl.config.schema import SplitSizes, SuiteConfig, TaskConfig, WorldConfig
from mmcl.core.registry import ConfigError
from mmcl.data import GENERATORS
from mmcl.data.generators.micl_world import COLOR_NAMES, SHAPES, SIGN_WORDS
from mmcl.data.generators.mode_synth import COLORED_LIKE, LOOKS, TASKS, ModeSynth
from mmcl.data.records import perception_path, read_jsonl, split_path
from mmcl.jobs.params import load_params

ROOT = Path(__file__).resolve().parents[1]
UNDERSTANDING = {name: TaskConfig(*kind) for name, kind in TASKS.items() if name != "draw"}
PATCH = 128.0  # the grey of a patch over a cell


def make_suite(seed: int = 0, train: int = 80, test: int = 20, pretrain: int = 0, tasks=None, **world) -> SuiteConfig:
    return SuiteConfig(
        generator="mode_synth",
        seed=seed,
        sizes=SplitSizes(train, test, pretrain),
        world=WorldConfig(**{"image_size": 48, "max_objects": 2, **world}),
        tasks=dict(UNDERSTANDING if tasks is None else tasks),
    )


def samples_of(root: Path, task: str):
    return [sample for split in ("train", "test") for sample in read_jsonl(split_path(root, task, split))]


@pytest.fixture(scope="module")
def suite_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("mode")
    ModeSynth(make_suite(pretrain=40)).generate(root)
    return root


def test_registered_under_its_name():
    assert GENERATORS.get("mode_synth") is ModeSynth


def test_same_seed_same_bytes_and_other_seed_other_data(suite_dir, tmp_path):
    ModeSynth(make_suite(pretrain=40)).generate(tmp_path / "again")
    ModeSynth(make_suite(seed=1, pretrain=40)).generate(tmp_path / "other")
    first, again, other = (file_digests(p) for p in (suite_dir, tmp_path / "again", tmp_path / "other"))
    assert first == again
    assert other.keys() == first.keys()
    assert sum(first[p] != other[p] for p in first) > 0.9 * len(first)


def test_every_task_and_draw_are_written_as_valid_records(suite_dir):
    for task in TASKS:  # draw too, though the suite does not list it
        samples = samples_of(suite_dir, task)
        assert len(samples) == 100 and all(len(s.media) == 1 and s.options is None for s in samples), task
        assert {s.modality for s in samples} == {"image"}
    tags = read_jsonl(perception_path(suite_dir, "image"))
    assert len(tags) == 40 and not perception_path(suite_dir, "audio").exists()


def test_listing_draw_as_a_task_changes_no_byte(suite_dir, tmp_path):
    listed = {**UNDERSTANDING, "draw": TaskConfig("generation", "image")}
    ModeSynth(make_suite(pretrain=40, tasks=listed)).generate(tmp_path)
    assert file_digests(tmp_path) == file_digests(suite_dir)


def test_no_task_is_answered_by_a_constant(suite_dir):
    for task in TASKS:
        answers = Counter(s.answers[0] for s in samples_of(suite_dir, task))
        assert max(answers.values()) <= 0.4 * answers.total(), (task, answers.most_common(3))


def test_unknown_or_mistyped_tasks_and_worlds_raise_config_error():
    with pytest.raises(
        ConfigError, match=r"mode_synth task 'resaon': not a task it writes \(did you mean 'reason'\?\)"
    ):
        ModeSynth(make_suite(tasks={"resaon": TaskConfig("qa", "image")}))
    with pytest.raises(ConfigError, match=r"'draw': is \(generation, image\), got \(captioning, image\)"):
        ModeSynth(make_suite(tasks={"draw": TaskConfig("captioning", "image")}))
    with pytest.raises(ConfigError, match="image_size must be at least 36 for read"):
        ModeSynth(make_suite(image_size=32))
    ModeSynth(make_suite(image_size=32, tasks={"classify": TaskConfig("qa", "image")}))  # no signs: 32 px is fine
    with pytest.raises(ConfigError, match="max_objects must be at least 2 for reason, compose"):
        ModeSynth(make_suite(max_objects=1))


# --- answers read off the pixels ---------------------------------------------------------------


def test_read_answer_is_the_word_on_the_sign(suite_dir):
    for sample in samples_of(suite_dir, "read"):
        letters = ink(pixels_of(suite_dir / sample.media[0]))
        assert [w for w in SIGN_WORDS if written(w).shape == letters.shape and (written(w) == letters).all()] == (
            sample.answers
        ), sample.id


def test_classify_names_the_one_object(suite_dir):
    for sample in samples_of(suite_dir, "classify"):
        (seen,) = objects_in(suite_dir / sample.media[0]).values()
        assert sample.answers == [" ".join(seen)], sample.id


def test_draw_answer_is_the_attributes_of_the_target_image(suite_dir):
    places = Counter()
    for sample in samples_of(suite_dir, "draw"):
        color, shape, row, column = sample.answers[0].split()
        assert color in COLOR_NAMES and shape in SHAPES and row in ROWS and column in COLUMNS, sample.id
        assert objects_in(suite_dir / sample.media[0]) == {(row, column): (color, shape)}, sample.id
        assert f"{color} {shape}" in sample.instruction and f"{row} {column}" in sample.instruction, sample.id
        places[row, column] += 1
    assert len(places) == 9


def holds(relation: str, a: tuple[str, str], b: tuple[str, str]) -> bool:
    """Whether the object at cell ``a`` is ``relation`` the one at cell ``b`` (cells as (row, column))."""
    axis, order = {"left": (1, COLUMNS), "right": (1, COLUMNS[::-1]), "above": (0, ROWS), "below": (0, ROWS[::-1])}[
        relation.split()[0]
    ]
    return order.index(a[axis]) < order.index(b[axis])


def test_compose_answers_relate_the_objects_in_the_image(suite_dir):
    kinds = Counter()
    for sample in samples_of(suite_dir, "compose"):
        objects = objects_in(suite_dir / sample.media[0])
        question, (answer,) = sample.instruction, sample.answers
        if match := re.fullmatch(r"what (color|shape) is the object (left of|right of|above|below) (.+) \?", question):
            asked, relation, anchor = match.groups()
            (cell,) = [c for c in objects if holds(relation, c, referent(anchor, objects))]
            expected = objects[cell][asked == "shape"]
        elif match := re.fullmatch(r"is (.+) (left or right of|above or below) (.+) \?", question):
            a, axis, b = match.groups()
            (expected,) = [r for r in axis.split()[::2] if holds(r, referent(a, objects), referent(b, objects))]
        else:
            a, relation, b = re.fullmatch(r"is (.+?) (left of|right of|above|below) (.+) \?", question).groups()
            expected = "yes" if holds(relation, referent(a, objects), referent(b, objects)) else "no"
        assert answer == expected, sample.id
        kinds[question.split()[0] if answer not in ("yes", "no") else answer] += 1
    assert set(kinds) == {"what", "is", "yes", "no"}


def test_reason_gold_letter_is_the_one_option_in_the_image_that_fits(suite_dir):
    letters = Counter()
    for sample in samples_of(suite_dir, "reason"):
        seen = {f"{color} {shape}": cell for cell, (color, shape) in objects_in(suite_dir / sample.media[0]).items()}
        question, listed = re.fullmatch(
            r"(.+ \?) (a \. .+) answer with the option's letter \.", sample.instruction
        ).groups()
        options = dict(re.findall(r"([abcd]) \. (\w+ \w+)", listed))
        assert list(options) == ["a", "b", "c", "d"] and len(set(options.values())) == 4, sample.id
        if match := re.fullmatch(r"which object is (highest|lowest|furthest left|furthest right) \?", question):
            relation = {"highest": "above", "lowest": "below"}.get(match.group(1)) or match.group(1).split()[1]
            fits = [t for t, cell in seen.items() if all(holds(relation, cell, c) for u, c in seen.items() if u != t)]
        elif match := re.fullmatch(r"which object in the image has the color of (.+) \?", question):
            fits = [t for t in seen if match.group(1) in COLORED_LIKE[t.split()[0]]]
        else:
            looks = re.fullmatch(r"which object in the image (.+) \?", question).group(1)
            fits = [t for t in seen if LOOKS[t.split()[1]] == looks]
        assert [letter for letter, option in options.items() if option in fits] == sample.answers, sample.id
        letters[sample.answers[0]] += 1
    assert set(letters) == {"a", "b", "c", "d"}


def view_of(pixels: np.ndarray) -> tuple[str, dict]:
    """What a view shows: its kind, read off its pixels, and the objects that can be seen."""
    if pixels.max() < 8:  # below every background shade
        return "dark", {}
    if (pixels.max(axis=2) > 100).mean() > 0.5:  # static is mostly bright; a scene mostly dark background
        return "static", {}
    if len(np.unique(pixels.reshape(-1, 3), axis=0)) > 40:  # a scene has a few exact colours
        return "noisy", {}
    edges = [round(i * pixels.shape[0] / 3) for i in range(4)]
    patches = [
        (r, c)
        for r in range(3)
        for c in range(3)
        if (pixels[edges[r] : edges[r + 1], edges[c] : edges[c + 1]] == PATCH).all()
    ]
    pixels = pixels.copy()
    for r, c in patches:  # read the scene around the patches
        pixels[edges[r] : edges[r + 1], edges[c] : edges[c + 1]] = 0
    return ("patched" if patches else "clean"), objects_in(pixels)


def test_unanswerable_exactly_where_the_asked_object_cannot_be_seen(suite_dir):
    kinds = Counter()
    for sample in samples_of(suite_dir, "unanswerable"):
        kind, objects = view_of(pixels_of(suite_dir / sample.media[0]))
        (answer,) = sample.answers
        if kind == "noisy":  # mild noise: answered as usual
            assert answer != "unanswerable", sample.id
            kinds["noisy"] += 1
            continue
        subject = re.fullmatch(r"(?:what color is|what shape is|where is) (.+) \?", sample.instruction).group(1)
        words = set(subject.split()[1:]) - {"object"}
        visible = [(cell, thing) for cell, thing in objects.items() if words <= set(thing)]
        if not visible:  # a dark frame, static, or the object under the patch
            assert answer == "unanswerable", sample.id
        else:
            ((cell, (color, shape)),) = visible
            expected = {"color": color, "shape": shape}.get(sample.instruction.split()[1], " ".join(cell))
            assert answer == expected, sample.id
        kinds[f"{kind}, {'unanswerable' if not visible else 'answered'}"] += 1
    assert set(kinds) == {
        "clean, answered",
        "noisy",
        "patched, answered",  # the patch covers another cell
        "patched, unanswerable",
        "dark, unanswerable",
        "static, unanswerable",
    }, kinds
    assert 0.15 < sum(n for k, n in kinds.items() if "unanswerable" in k) / kinds.total() < 0.45


def test_perception_views_are_tagged_with_what_can_be_seen(suite_dir):
    damages = Counter()
    for sample in read_jsonl(perception_path(suite_dir, "image")):
        tags = set(sample.answers)
        if any(tag.startswith("word:") for tag in tags):
            continue  # a sign, tagged as in llava-synth
        kind, objects = view_of(pixels_of(suite_dir / sample.media[0]))
        (damage,) = [tag.removeprefix("view:") for tag in tags if tag.startswith("view:")]
        assert damage in {"patched": ("covered", "hidden")}.get(kind, (kind,)), sample.id
        if kind != "noisy":
            assert f"count:{len(objects)}" in tags, sample.id
            assert all({f"{r}-{c}:{color}", f"{r}-{c}:{shape}"} <= tags for (r, c), (color, shape) in objects.items())
        damages[damage] += 1
    assert 5 < damages.total() < 35  # about half of the 40 are views, the rest signs


# --- the suite in params.yaml ------------------------------------------------------------------


def test_params_suite_loads_and_generates(tmp_path):
    suite = load_params(ROOT / "params.yaml").suites["mode-synth"]
    assert list(suite.tasks) == [*UNDERSTANDING, "draw"] and suite.orders["coin"] == list(UNDERSTANDING)
    assert suite.tasks["draw"].family == "generation"  # scored by judging the decoded picture
    assert suite.text_tasks == []
    ModeSynth(replace(suite, sizes=SplitSizes(4, 2, 0))).generate(tmp_path)
    assert {p.parent.name for p in tmp_path.glob("*/train.jsonl")} == set(TASKS)


def test_default_sizes_generate_quickly(tmp_path):
    started = time.process_time()  # CPU time: what generation costs, however busy the machine is
    summary = ModeSynth(make_suite(train=2000, test=100, pretrain=2000)).generate(tmp_path)
    print(f"mode-synth at the default sizes: {time.process_time() - started:.1f} s CPU, {summary['seconds']} s wall")
    assert time.process_time() - started <= 30
    assert {name: task["splits"]["train"]["samples"] for name, task in summary["tasks"].items()} == dict.fromkeys(
        TASKS, 2000
    )
