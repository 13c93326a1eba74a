"""What every dataset adapter shares: finding the source's files, and writing the converted dataset.

A converted dataset, ``data/<dataset>/``::

    train.jsonl val.jsonl test.jsonl   the common instruction format (``mmcl.data.records``), media paths
                                       relative to this directory (val.jsonl only when the source has one)
    media/<name>                       each media file a sample uses, hard-linked (else copied) from the source
    prepare.json                       samples per split, samples skipped because their media file is
                                       missing or cannot be decoded (counted, with examples), total size

An adapter finds its files by name anywhere among the dataset's downloaded files and unpacked
archives, so a mirror that packs them differently converts too, and hands each sample to
``DatasetWriter.add``, which checks that its media file decodes.
"""

from __future__ import annotations

import csv
import hashlib
import heapq
import json
import os
import shutil
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from mmcl.config.schema import DatasetConfig
from mmcl.data.media import problem
from mmcl.data.records import DataError, Sample, write_jsonl

SPLITS = ("train", "val", "test")
CAPTION_INSTRUCTION = "describe the {modality}."  # MoInCL's captioning prompt; a QA sample's is its question
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3")
VIDEO_SUFFIXES = (".mp4", ".avi", ".webm", ".mkv", ".mov")
EXAMPLES = 10  # skipped samples listed in prepare.json


@dataclass
class SplitFiles:
    """The source's file for each split (null: the source has no such split)."""

    train: str | None = None
    val: str | None = None
    test: str | None = None

    def given(self) -> list[tuple[str, str]]:
        """(split, file name) of every split the source has, in the order of ``SPLITS``."""
        return [(split, name) for split in SPLITS if (name := getattr(self, split)) is not None]


class Sources:
    """A dataset's files after download: plain files and unpacked archives, searched by file name."""

    def __init__(self, paths: list[Path], fix: str):
        self.paths = paths
        self.fix = fix  # what to check when a file is not found

    def _members(self):
        for path in self.paths:
            members = sorted(path.rglob("*")) if path.is_dir() else [path]
            for member in members:  # skip the resource forks and hidden files some archivers add
                if member.is_file() and not any(p.startswith(".") or p == "__MACOSX" for p in member.parts[-2:]):
                    yield member

    def file(self, name: str) -> Path:
        """The one file called ``name``."""
        found = [member for member in self._members() if member.name == name]
        if len(found) != 1:
            where = ", ".join(str(path) for path in self.paths)
            count = f"{len(found)} files ({', '.join(map(str, found[:3]))})" if found else "no file"
            raise DataError(f"{name}: expected one file of this name among {where}, found {count}; {self.fix}")
        return found[0]

    def media_files(self, suffixes: tuple[str, ...]) -> list[Path]:
        """Every file with one of these suffixes, in path order (for sources whose file names repeat)."""
        return [member for member in self._members() if member.suffix.lower() in suffixes]

    def media(self, suffixes: tuple[str, ...]) -> dict[str, Path]:
        """Every file with one of these suffixes, by file name (the first in path order when a name repeats)."""
        index: dict[str, Path] = {}
        for member in self.media_files(suffixes):
            index.setdefault(member.name, member)
        return index


def by_stem(index: dict[str, Path]) -> dict[str, Path]:
    """A media index keyed by file name without its extension."""
    stems: dict[str, Path] = {}
    for name, path in index.items():
        stems.setdefault(Path(name).stem, path)
    return stems


def read_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: not valid JSON ({err}); the file is damaged or not the one expected") from None


def read_csv(path: Path, columns: tuple[str, ...]) -> list[dict[str, str]]:
    """The rows of a CSV file with a header naming (at least) ``columns``."""
    with open(path, newline="", encoding="utf-8-sig") as f:  # -sig: some exports start with a byte-order mark
        reader = csv.DictReader(f)
        if missing := [c for c in columns if c not in (reader.fieldnames or [])]:
            raise DataError(
                f"{path}: no column {', '.join(missing)} (header: {', '.join(reader.fieldnames or [])}); "
                "the file is not the one expected"
            )
        return list(reader)


def by_frequency(answers: list[str]) -> list[str]:
    """Annotators' answers with their repeats (the ``vqa`` metric counts them), the most frequent first
    (the training target)."""
    return [answer for answer, n in Counter(answers).most_common() for _ in range(n)]


def held_out(keys: Iterable[str], count: int) -> set[str]:
    """A test split for a source without one: the ``count`` keys with the smallest SHA-256, the same on
    every machine whatever the order of the source's items."""
    return set(heapq.nsmallest(count, set(keys), key=lambda key: hashlib.sha256(key.encode()).hexdigest()))


def image_splits(entries: list[dict], count: int) -> Callable[[dict], str]:
    """Each entry's split: ``test`` for those of the ``count`` held-out images (``held_out``), else ``train``."""
    test = held_out((entry["image"] for entry in entries), count)
    return lambda entry: "test" if entry["image"] in test else "train"


def clean(text: str) -> str:
    """One line, single spaces: a line break inside a caption would split it in two for the scorer."""
    return " ".join(str(text).split())


class Adapter:
    """Converts one source format; ``config`` is the dataset's entry (its adapter's dataclass)."""

    family: str = ""  # what its samples are: captioning | qa
    modality: str = ""  # image | audio | video
    splits: tuple[str, ...] = ("train", "test")  # the splits it must write: a task trains on one, tests on the other
    name: str  # set by the registry

    def __init__(self, config: DatasetConfig):
        self.config = config

    def convert(self, sources: Sources, writer: DatasetWriter) -> None:
        raise NotImplementedError


class DatasetWriter:
    """Collects a dataset's samples, links their media into ``media/`` and writes one JSONL per split."""

    def __init__(self, dataset: str, modality: str, out_dir: Path):
        self.dataset, self.modality, self.out_dir = dataset, modality, out_dir
        self.samples: dict[str, list[Sample]] = {split: [] for split in SPLITS}
        self.skipped: dict[str, Counter] = {split: Counter() for split in SPLITS}
        self.examples: list[str] = []
        self.problems: dict[Path, str | None] = {}  # source media file -> why it cannot be used (None: it can)
        self.ids: set[str] = set()
        self.linked: dict[str, Path] = {}  # media/<name> -> the source file linked there

    def add(
        self,
        split: str,
        key: str,
        instruction: str,
        answers: list[str],
        media: Path | None,
        wanted: str,
        name: str | None = None,
    ):
        """One sample, unless its media file (``media``; None when no file ``wanted`` was found) is missing
        or cannot be decoded, or it has no answer: then it is skipped and counted. ``name``: the media
        file's name under ``media/`` when the source's own names repeat (default: its own name)."""
        answers = [text for answer in answers if (text := clean(answer))]
        reason = None
        if media is None:
            kind, reason = "missing media", f"{wanted}: no such file among the sources"
        elif not answers:
            kind, reason = "no answer", f"{wanted}: no answer or reference"
        else:
            if media not in self.problems:
                self.problems[media] = problem(self.modality, media)
            if self.problems[media]:
                kind, reason = "undecodable media", f"{media.name}: {self.problems[media]}"
        if reason:
            self.skipped[split][kind] += 1
            if len(self.examples) < EXAMPLES:
                self.examples.append(f"{split} {key}: {reason}")
            return
        sample_id = f"{self.dataset}-{split}-{key}"
        if sample_id in self.ids:
            raise DataError(f"{self.dataset}: two {split} samples have the key '{key}'; the source lists it twice")
        self.ids.add(sample_id)
        relative = self._link(media, name or media.name)
        self.samples[split].append(
            Sample(sample_id, self.dataset, self.modality, clean(instruction), answers, [relative])
        )

    def _link(self, media: Path, name: str) -> str:
        relative = f"media/{name}"
        if self.linked.setdefault(relative, media) != media:
            raise DataError(
                f"{self.dataset}: {media} and {self.linked[relative]} would both be {relative}; "
                "the adapter must name media files whose names repeat"
            )
        target = self.out_dir / relative
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(media, target)  # no second copy of a large dataset
            except OSError:  # another filesystem, or links not supported
                shutil.copyfile(media, target)
        return relative

    def finish(self, required: tuple[str, ...]) -> dict:
        """Write the split files; return per-split counts (a split the source lacks is left out, unless
        it is ``required``: the adapter's ``splits``)."""
        splits = {}
        for split in SPLITS:
            samples, skipped = self.samples[split], self.skipped[split]
            if not samples and skipped:
                raise DataError(
                    f"{self.dataset}: every {split} sample was skipped ({_counts(skipped)}), "
                    f"e.g. {'; '.join(self.examples[:3])}; check that the media files are among the sources"
                )
            if samples:
                write_jsonl(self.out_dir / f"{split}.jsonl", samples)
                media = {path for sample in samples for path in sample.media}
                splits[split] = {"samples": len(samples), "media": len(media), "skipped": dict(skipped)}
        for split in required:
            if split not in splits:
                raise DataError(
                    f"{self.dataset}: the source has no {split} split; this dataset needs {' and '.join(required)}"
                )
        return {
            "splits": splits,
            "skipped": dict(sum(self.skipped.values(), Counter())),
            "skipped_examples": self.examples,
            "bytes": sum(p.stat().st_size for p in self.out_dir.rglob("*") if p.is_file()),
        }


def _counts(counter: Counter) -> str:
    return ", ".join(f"{n} {kind}" for kind, n in sorted(counter.items()))


@dataclass
class QuestionFilesConfig(DatasetConfig):
    """A source of image questions in one JSON file per split."""

    questions: SplitFiles = field(default_factory=SplitFiles)


class ImageQuestions(Adapter):
    """Image QA from one question file per split, each image found by the id that names it (its file stem)."""

    family, modality = "qa", "image"
    config: QuestionFilesConfig

    def questions(self, data) -> Iterable[tuple[str, str, list[str], str]]:
        """(key, question, answers, image id) of every question in a file's JSON."""
        raise NotImplementedError

    def convert(self, sources: Sources, writer: DatasetWriter) -> None:
        images = by_stem(sources.media(IMAGE_SUFFIXES))
        for split, file in self.config.questions.given():
            for key, question, answers, image in self.questions(read_json(sources.file(file))):
                writer.add(split, key, question, answers, images.get(image), f"image {image}")
