"""micl-synth generator: determinism, real media files, text format, and text that matches the media."""

from __future__ import annotations

import hashlib
import json
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile
from PIL import Image, ImageSequence

from mmcl.config.schema import SplitSizes, SuiteConfig, TaskConfig, WorldConfig
from mmcl.core.registry import ConfigError
from mmcl.data import GENERATORS
from mmcl.data.generators import micl_world
from mmcl.data.generators.micl_synth import MiclSynth
from mmcl.data.records import Sample, perception_path, read_jsonl, split_path

TASKS = {
    "image_cap": TaskConfig("captioning", "image"),
    "image_qa": TaskConfig("qa", "image"),
    "audio_cap": TaskConfig("captioning", "audio"),
    "audio_qa": TaskConfig("qa", "audio"),
    "video_cap": TaskConfig("captioning", "video"),
    "video_qa": TaskConfig("qa", "video"),
    "text_qa": TaskConfig("qa", "text"),
}
QA_TASKS = [name for name, task in TASKS.items() if task.family == "qa"]
CAPTION_TASKS = [name for name, task in TASKS.items() if task.family == "captioning"]
WORLD = WorldConfig()

# Reference colours chosen here, independently of the generator's palette.
PROTOTYPES = {
    "red": (255, 0, 0),
    "green": (0, 255, 0),
    "blue": (0, 0, 255),
    "yellow": (255, 255, 0),
    "purple": (160, 32, 240),
    "white": (255, 255, 255),
}
PITCH_HZ = {"low": 300.0, "mid": 700.0, "high": 1500.0}
NUMBER_WORDS = ("zero", "one", "two", "three", "four")
ROWS, COLUMNS = ("top", "middle", "bottom"), ("left", "center", "right")


def make_suite(
    seed: int = 0, train: int = 20, test: int = 10, pretrain: int = 0, tasks: dict | None = None, **world
) -> SuiteConfig:
    sizes = SplitSizes(train, test, pretrain)
    return SuiteConfig(seed=seed, sizes=sizes, world=WorldConfig(**world), tasks=dict(tasks or TASKS))


def file_digests(root: Path) -> dict[str, str]:
    return {
        str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def samples_of(root: Path, task: str) -> list[Sample]:
    return [sample for split in ("train", "test") for sample in read_jsonl(split_path(root, task, split))]


@pytest.fixture(scope="module")
def suite_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("micl")
    MiclSynth(make_suite()).generate(root)
    return root


def test_registered_under_its_name():
    assert GENERATORS.get("micl_synth") is MiclSynth


def test_same_seed_same_bytes_and_other_seed_other_data(suite_dir, tmp_path):
    MiclSynth(make_suite()).generate(tmp_path / "again")
    MiclSynth(make_suite(seed=1)).generate(tmp_path / "other")
    first, again, other = (
        file_digests(suite_dir),
        file_digests(tmp_path / "again"),
        file_digests(tmp_path / "other"),
    )
    assert len(first) == 1 + 2 * len(TASKS) + 6 * 30  # vocab, JSONL per split, media of 6 tasks
    assert first == again
    assert other.keys() == first.keys()
    changed = [path for path in first if first[path] != other[path]]
    assert len(changed) > 0.95 * len(first)
    # Train and test come from different streams: the test split does not start like the train split.
    train, test = (read_jsonl(split_path(suite_dir, "text_qa", split)) for split in ("train", "test"))
    assert [s.instruction for s in test] != [s.instruction for s in train[: len(test)]]


def test_text_is_what_the_generator_has_always_written(tmp_path):
    """The default grid's results depend on these bytes: a refactoring must not draw in another order.
    (The digest was recorded before micl_synth shared its machinery with llava_synth.)"""
    MiclSynth(make_suite(pretrain=8, max_objects=2)).generate(tmp_path)
    digest = hashlib.sha256()
    for path in sorted([*tmp_path.rglob("*.jsonl"), tmp_path / "vocab.txt"]):
        digest.update(path.relative_to(tmp_path).as_posix().encode() + b"\n" + path.read_bytes())
    assert digest.hexdigest() == "f8de7a4b0ac0f1171ac56c5997eaf143349af6a79f8904468a172da9919ca51a"


def test_adding_a_task_leaves_other_tasks_unchanged(suite_dir, tmp_path):
    MiclSynth(make_suite(tasks={"image_qa": TASKS["image_qa"]})).generate(tmp_path)
    alone = {p: d for p, d in file_digests(tmp_path).items() if "image_qa" in p}
    together = {p: d for p, d in file_digests(suite_dir).items() if "image_qa" in p}
    assert alone == together


def test_summary_counts(tmp_path):
    summary = MiclSynth(make_suite(train=6, test=4)).generate(tmp_path)
    assert set(summary["tasks"]) == set(TASKS)
    for name, task in summary["tasks"].items():
        assert (task["family"], task["modality"]) == (TASKS[name].family, TASKS[name].modality)
        assert task["splits"]["train"]["samples"] == 6
        assert task["splits"]["test"]["samples"] == 4
        assert 1 <= task["splits"]["test"]["distinct_answers"] <= 4
    assert summary["files"] == len(file_digests(tmp_path))
    assert summary["seconds"] >= 0


def test_media_files_decode(suite_dir):
    for name, task in TASKS.items():
        for split in ("train", "test"):
            for index, sample in enumerate(read_jsonl(split_path(suite_dir, name, split))):
                assert sample.id == f"{name}-{split}-{index:05d}"
                assert (sample.task, sample.modality) == (name, task.modality)
                if task.modality == "text":
                    assert sample.media == []
                    continue
                (relative,) = sample.media
                assert relative.startswith(f"media/{name}/{split}/{index:05d}.")
                path = suite_dir / relative
                if task.modality == "image":
                    with Image.open(path) as image:
                        assert image.format == "PNG"
                        assert image.size == (WORLD.image_size, WORLD.image_size)
                elif task.modality == "audio":
                    info = soundfile.info(path)
                    assert (info.format, info.subtype, info.channels) == ("WAV", "PCM_16", 1)
                    assert info.samplerate == WORLD.sample_rate
                    assert info.frames == round(WORLD.sample_rate * WORLD.audio_seconds)
                else:
                    with Image.open(path) as clip:
                        assert clip.format == "GIF"
                        frames = [frame.convert("RGB") for frame in ImageSequence.Iterator(clip)]
                    assert len(frames) == WORLD.video_frames
                    assert all(frame.size == (WORLD.image_size, WORLD.image_size) for frame in frames)


def test_test_media_never_repeat_train_media(tmp_path, monkeypatch):
    # A fixed background and one object per scene leave ~1500 distinct images: 200 x 50 draws would
    # repeat some train images in the test split if the generator did not draw those again.
    monkeypatch.setattr(micl_world, "_background", lambda rng: (16, 16, 24))
    suite = make_suite(train=200, test=50, tasks={"image_qa": TASKS["image_qa"]}, max_objects=1)
    MiclSynth(suite).generate(tmp_path)
    digests = file_digests(tmp_path)
    train, test = (
        {digests[s.media[0]] for s in read_jsonl(split_path(tmp_path, "image_qa", split))}
        for split in ("train", "test")
    )
    assert len(train) < 200  # the world is small enough that the train split repeats itself
    assert not train & test


def test_vocab_is_exactly_the_words_used(suite_dir):
    vocab = (suite_dir / "vocab.txt").read_text().splitlines()
    assert vocab == sorted(set(vocab))
    used = set()
    for name in TASKS:
        for sample in samples_of(suite_dir, name):
            for text in (sample.instruction, *sample.answers):
                assert text == text.lower().strip() and "  " not in text
                used.update(text.split())
    assert set(vocab) == used
    assert all(len(word) == 1 or word.isalpha() for word in vocab)  # punctuation stands alone


def test_captions_are_distinct_paraphrases_and_varied(suite_dir):
    for name in CAPTION_TASKS:
        samples = samples_of(suite_dir, name)
        assert len({sample.instruction for sample in samples}) == 1
        for sample in samples:
            assert len(set(sample.answers)) == len(sample.answers) == WORLD.references_per_caption
            assert all(len(answer.split()) <= 15 for answer in sample.answers)
        firsts = Counter(sample.answers[0] for sample in samples)
        assert len(firsts) >= 0.6 * len(samples), name
        assert max(firsts.values()) <= 0.15 * len(samples), name


def test_qa_answers_are_single_words_and_balanced(suite_dir):
    answer_sets = {}
    for name in QA_TASKS:
        samples = samples_of(suite_dir, name)
        answers = Counter()
        for sample in samples:
            (answer,) = sample.answers
            assert len(answer.split()) == 1 and answer.isalpha()
            assert sample.instruction.split()[-1] == "?"
            assert len(sample.instruction.split()) <= 32
            answers[answer] += 1
        assert max(answers.values()) < 0.5 * len(samples), (name, answers.most_common(3))
        assert len(answers) >= 8, (name, answers)  # several question kinds, not one
        answer_sets[name] = set(answers)
    # Tasks share some answers but not most: drifting to the latest task's outputs must cost accuracy.
    assert len(answer_sets["audio_qa"] & answer_sets["image_qa"]) <= 2
    assert answer_sets["video_qa"] - answer_sets["image_qa"]


@pytest.mark.parametrize("task", [TaskConfig("captioning", "text"), TaskConfig("qa", "smell")])
def test_unsupported_family_and_modality_raise_config_error(task):
    with pytest.raises(ConfigError, match=r"'odd_task'.*supported: .*\(qa, text\)"):
        MiclSynth(make_suite(tasks={"odd_task": task}))


@pytest.mark.parametrize(
    "world", [{"references_per_caption": 9}, {"max_objects": 9}, {"video_frames": 1}, {"image_size": 16}]
)
def test_impossible_world_settings_raise_config_error(world):
    with pytest.raises(ConfigError, match=next(iter(world))):
        MiclSynth(make_suite(**world))


def nearest_color(rgb: np.ndarray) -> str:
    return min(PROTOTYPES, key=lambda name: float(np.sum((rgb - np.array(PROTOTYPES[name])) ** 2)))


def shape_of(mask: np.ndarray) -> str:
    """Tell the four shapes apart from a boolean mask cropped to the object."""
    rows, columns = np.nonzero(mask)
    box = mask[rows.min() : rows.max() + 1, columns.min() : columns.max() + 1]
    if box.mean() > 0.95:
        return "square"
    if box[-1].sum() > 2 * box[0].sum():
        return "triangle"
    return "circle" if box.mean() > 0.65 else "cross"


def pixels_of(image_path: Path) -> np.ndarray:
    with Image.open(image_path) as image:
        return np.asarray(image.convert("RGB")).astype(float)


def objects_in(image: Path | np.ndarray) -> dict[tuple[str, str], tuple[str, str]]:
    """(row, column) -> (colour, shape) of every object seen in a scene image (a file or its pixels)."""
    pixels = image if isinstance(image, np.ndarray) else pixels_of(image)
    edges = [round(i * pixels.shape[0] / 3) for i in range(4)]
    objects = {}
    for r, row in enumerate(ROWS):
        for c, column in enumerate(COLUMNS):
            cell = pixels[edges[r] : edges[r + 1], edges[c] : edges[c + 1]]
            foreground = cell.max(axis=2) > 100  # the background is dark
            if foreground.sum() >= 20:
                objects[(row, column)] = (
                    nearest_color(np.median(cell[foreground], axis=0)),
                    shape_of(foreground),
                )
            else:
                assert not foreground.any(), f"{image}: stray pixels in the {row} {column} cell"
    return objects


def test_image_captions_match_the_pixels(suite_dir):
    for sample in samples_of(suite_dir, "image_cap"):
        named = {}
        for phrase in sample.answers[0].split(" and "):  # "a red circle at the top left"
            _, color, shape, _, _, row, column = phrase.split()
            named[(row, column)] = (color, shape)
        assert named == objects_in(suite_dir / sample.media[0]), sample.id
        reading_order = sorted(named, key=lambda cell: (ROWS.index(cell[0]), COLUMNS.index(cell[1])))
        assert list(named) == reading_order, sample.id


def answer_from_pixels(question: str, objects: dict[tuple[str, str], tuple[str, str]]) -> str:
    """Answer an image question from the objects seen in the pixels, reading only the question's words."""
    words = question.split()
    if words[:2] == ["how", "many"]:
        return NUMBER_WORDS[len(objects)]
    if words[:2] == ["what", "color"]:  # what color is the <shape> ?
        return next(color for color, shape in objects.values() if shape == words[4])
    if words[:2] == ["what", "shape"]:  # what shape is the <color> object ?
        return next(shape for color, shape in objects.values() if color == words[4])
    # is the <colour and/or shape> at the top , middle or bottom ?  (or: left , center or right)
    reference = set(words[2 : words.index("at")]) - {"object"}
    (place,) = [place for place, thing in objects.items() if reference <= set(thing)]
    return place[0] if "top" in words else place[1]


@pytest.mark.parametrize("max_objects", [1, 3])
def test_image_qa_answers_match_the_pixels(tmp_path, max_objects):
    suite = make_suite(train=150, test=10, tasks={"image_qa": TASKS["image_qa"]}, max_objects=max_objects)
    MiclSynth(suite).generate(tmp_path)
    for sample in samples_of(tmp_path, "image_qa"):
        objects = objects_in(tmp_path / sample.media[0])
        assert [answer_from_pixels(sample.instruction, objects)] == sample.answers, sample.id


def test_perception_tags_match_the_pixels_and_never_repeat_test_media(tmp_path):
    tasks = {name: TASKS[name] for name in ("image_qa", "audio_qa")}
    summary = MiclSynth(make_suite(train=4, test=30, pretrain=40, tasks=tasks, max_objects=2)).generate(tmp_path)
    assert summary["perception"] == {"image": 40, "audio": 40}
    images = read_jsonl(perception_path(tmp_path, "image"))
    assert len(images) == 40
    for sample in images:
        objects = objects_in(tmp_path / sample.media[0])
        expected = {f"count:{len(objects)}"}
        for (row, column), (color, shape) in objects.items():
            expected |= {f"{row}-{column}:{color}", f"{row}-{column}:{shape}", f"{color}:{shape}"}
        assert set(sample.answers) == expected, sample.id
    for sample in read_jsonl(perception_path(tmp_path, "audio")):
        heard = sounds_in(tmp_path / sample.media[0])
        assert f"count:{len(heard)}" in sample.answers and f"kind:{heard[0][0]}" in sample.answers, sample.id
        assert [f"sound{i}:{pitch}" for i, (_, pitch) in enumerate(heard)] == sample.answers[3:], sample.id
    digests = file_digests(tmp_path)
    test_media = {digests[s.media[0]] for task in tasks for s in read_jsonl(split_path(tmp_path, task, "test"))}
    assert not test_media & {digest for path, digest in digests.items() if "perception/" in path}


def event_spans(wave: np.ndarray, rate: int) -> list[tuple[int, int]]:
    """Start and end samples of loud stretches, from 10 ms RMS frames."""
    hop = rate // 100
    frames = wave[: len(wave) // hop * hop].reshape(-1, hop)
    loud = np.sqrt((frames**2).mean(axis=1)) > 0.03
    edges = np.diff(np.concatenate([[0], loud.astype(int), [0]]))
    return [
        (start * hop, end * hop)
        for start, end in zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1), strict=True)
    ]


def sound_of(event: np.ndarray, rate: int) -> tuple[str, str]:
    """(kind, pitch) of one event from its spectrum: a single peak, a harmonic ladder, or a band."""
    power = np.abs(np.fft.rfft(event * np.hanning(len(event)))) ** 2
    hz = np.fft.rfftfreq(len(event), 1 / rate)
    peak = hz[np.argmax(power)]
    pitch = min(PITCH_HZ, key=lambda name: abs(np.log(peak / PITCH_HZ[name])))

    def share_near(frequency: float) -> float:  # within the main lobe of a windowed sine
        return power[np.abs(hz - frequency) <= 2.5 * rate / len(event)].sum() / power.sum()

    if share_near(peak) < 0.6:
        return "noise", pitch
    return ("buzz" if share_near(3 * peak) > 0.02 else "tone"), pitch


def sounds_in(path: Path) -> list[tuple[str, str]]:
    """(kind, pitch) of every event heard in a clip, in time order."""
    wave, rate = soundfile.read(path)
    return [sound_of(wave[start:end], rate) for start, end in event_spans(wave, rate)]


def test_audio_captions_match_the_waveform(suite_dir):
    for sample in samples_of(suite_dir, "audio_cap"):
        heading, pitches = sample.answers[0].split(" : ")  # "three buzz sounds : low , high , low"
        count, kind, _ = heading.split()
        named = [(kind, pitch) for pitch in pitches.split(" , ")]
        assert len(named) == NUMBER_WORDS.index(count), sample.id
        assert sounds_in(suite_dir / sample.media[0]) == named, sample.id


def test_audio_qa_answers_match_the_waveform(tmp_path):
    MiclSynth(make_suite(train=60, test=10, tasks={"audio_qa": TASKS["audio_qa"]})).generate(tmp_path)
    for sample in samples_of(tmp_path, "audio_qa"):
        heard, question = sounds_in(tmp_path / sample.media[0]), sample.instruction
        if question.startswith("how many"):
            expected = NUMBER_WORDS[len(heard)]
        elif "kind" in question:
            (expected,) = {kind for kind, _ in heard}
        else:  # what is the pitch of the first/last sound ?
            expected = heard[0 if "first" in question else -1][1]
        assert sample.answers == [expected], sample.id


def motion_in(path: Path) -> tuple[str, str, str, str]:
    """(colour, shape, direction, lane) of the one object moving through a clip."""
    with Image.open(path) as clip:
        frames = [np.asarray(frame.convert("RGB")).astype(float) for frame in ImageSequence.Iterator(clip)]
    seen, centres = set(), []
    for frame in frames:
        foreground = frame.max(axis=2) > 100  # the background is dark
        seen.add((nearest_color(np.median(frame[foreground], axis=0)), shape_of(foreground)))
        ys, xs = np.nonzero(foreground)
        centres.append((xs.mean(), ys.mean()))
    ((color, shape),) = seen
    steps = np.diff(np.array(centres), axis=0)
    axis = 0 if (steps[:, 1] == 0).all() else 1  # the other coordinate never changes
    assert (steps[:, 1 - axis] == 0).all() and (np.sign(steps[:, axis]) == np.sign(steps[0, axis])).all()
    direction = (("left", "right"), ("up", "down"))[axis][int(steps[0, axis] > 0)]
    lanes = ROWS if axis == 0 else COLUMNS
    lane = lanes[int(centres[0][1 - axis] * 3 // frames[0].shape[0])]
    return color, shape, direction, lane


def test_video_captions_match_the_motion(suite_dir):
    for sample in samples_of(suite_dir, "video_cap"):
        words = sample.answers[0].split()  # "a red circle moves left along the top"
        named = (words[1], words[2], words[4], words[7])
        assert motion_in(suite_dir / sample.media[0]) == named, sample.id


def test_video_qa_answers_match_the_motion(tmp_path):
    MiclSynth(make_suite(train=60, test=10, tasks={"video_qa": TASKS["video_qa"]})).generate(tmp_path)
    for sample in samples_of(tmp_path, "video_qa"):
        color, shape, direction, _ = motion_in(tmp_path / sample.media[0])
        question = sample.instruction
        if question.startswith("which way"):
            expected = direction
        elif question.startswith("what color"):
            expected = color
        else:
            expected = shape
        assert sample.answers == [expected], sample.id


def test_default_sizes_generate_quickly(tmp_path):
    suite = SuiteConfig(tasks=dict(TASKS))
    started = time.perf_counter()
    summary = MiclSynth(suite).generate(tmp_path)
    assert time.perf_counter() - started <= 30
    sizes = suite.sizes
    perception_files = 2 * (1 + sizes.pretrain)  # image and audio encoders
    assert summary["files"] == 1 + 2 * len(TASKS) + 6 * (sizes.train + sizes.test) + perception_files
    lines = (tmp_path / "text_qa" / "train.jsonl").read_text().splitlines()
    assert len(lines) == sizes.train and json.loads(lines[0])["answers"]
