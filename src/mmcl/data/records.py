"""The common instruction format every task is converted to: one JSONL file per split.

Each line is one sample::

    {"id": "image_qa-test-00007", "task": "image_qa", "modality": "image",
     "media": ["media/image_qa/test/00007.png"], "instruction": "what color is the circle ?",
     "answers": ["red"]}

``media`` paths are relative to the suite's data directory (empty for text-only tasks).
``answers`` holds the accepted answers of a QA sample or the reference captions of a captioning
sample; training uses one of them as the target. A multiple-choice sample also has ``options``
(the continuations evaluation compares, gold included: ``answers[0]``); the field is left out of
every other sample, so files written before it existed read the same. A generator may also write a
perception set per encoder (``perception/<modality>.jsonl``, ``answers`` = the media's attribute
tags) for backbones whose encoders start from random weights.
"""

from __future__ import annotations

import json
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path

from mmcl.core.io import atomic_path


class DataError(ValueError):
    """A problem in a suite's data (or its download); the message names the file and how to fix it."""


@dataclass
class Sample:
    id: str
    task: str
    modality: str
    instruction: str
    answers: list[str]
    media: list[str] = field(default_factory=list)
    options: list[str] | None = None  # multiple choice: the options, answers[0] (the gold) among them


FIELDS = [f.name for f in fields(Sample)]
REQUIRED = [f.name for f in fields(Sample) if f.default is MISSING and f.default_factory is MISSING]
LIST_FIELDS = ("answers", "media", "options")
MEDIA_FIX = "re-run `mmcl prepare` for this suite (or `dvc checkout` its data directory), or replace the file"
# Which encoder reads each media modality (video frames go through the image encoder): one perception set each.
ENCODER_OF = {"image": "image", "video": "image", "audio": "audio"}


def write_jsonl(path: str | Path, samples: list[Sample]) -> None:
    with atomic_path(path) as tmp, open(tmp, "w") as f:
        for sample in samples:
            record = {key: value for key, value in asdict(sample).items() if value is not None}  # unset optional fields
            f.write(json.dumps(record, sort_keys=True) + "\n")


def data_fix(data_dir: Path) -> str:
    """How to get a suite's data back: from the DVC cache, or by preparing it again."""
    prepare = f"mmcl prepare --suite {data_dir.name} --out {data_dir}"
    return f"restore it with `dvc checkout {data_dir}` or rebuild it with `{prepare}`"


def read_jsonl(path: str | Path, data_dir: str | Path | None = None) -> list[Sample]:
    """Every sample of a split file, checked before any job computes with it.

    Media paths are relative to the suite's data directory: by default the directory two levels
    above the file (``<data>/<task>/<split>.jsonl``, ``<data>/perception/<modality>.jsonl``).
    """
    path = Path(path)
    data_dir = Path(data_dir) if data_dir is not None else path.parent.parent
    if not data_dir.is_dir():
        raise DataError(f"{data_dir}: data directory does not exist; {data_fix(data_dir)}")
    if not path.exists():
        raise DataError(f"{path}: missing split file; {data_fix(data_dir)}")
    text = path.read_text()
    lines = text.splitlines()
    samples = []
    for number, line in enumerate(lines, 1):
        if line.strip():
            # write_jsonl ends every record with a newline: a last line without one was cut off
            truncated = number == len(lines) and not text.endswith("\n")
            samples.append(_parse(line, f"{path}:{number}", truncated, data_dir))
    return samples


def _parse(line: str, where: str, truncated: bool, data_dir: Path) -> Sample:
    fix = data_fix(data_dir)
    try:
        record = json.loads(line)
    except json.JSONDecodeError as err:
        if truncated:
            raise DataError(f"{where}: last line cut off mid-record (the file is truncated); {fix}") from None
        raise DataError(f"{where}: not valid JSON ({err.msg} at column {err.colno}); {fix}") from None
    if not isinstance(record, dict):
        raise DataError(f"{where}: expected a JSON object (one sample per line); {fix}")
    sample = f"sample '{record.get('id', '?')}'"
    for key in record:
        if key not in FIELDS:
            raise DataError(f"{where}: {sample}: unknown field '{key}' (fields: {', '.join(FIELDS)}); {fix}")
    for key in REQUIRED:
        if key not in record:
            raise DataError(f"{where}: {sample}: missing field '{key}'; {fix}")
    for key, value in record.items():
        if key in LIST_FIELDS:
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise DataError(f"{where}: {sample}: '{key}' must be a list of strings, got {value!r}; {fix}")
        elif not isinstance(value, str):
            raise DataError(f"{where}: {sample}: '{key}' must be a string, got {value!r}; {fix}")
    if not record["answers"]:
        raise DataError(f"{where}: {sample}: 'answers' is empty (it needs at least one answer or caption); {fix}")
    if (options := record.get("options")) is not None:
        if len(options) < 2 or len(set(options)) != len(options):
            raise DataError(f"{where}: {sample}: 'options' needs two or more distinct strings, got {options!r}; {fix}")
        if (gold := record["answers"][0]) not in options:
            raise DataError(f"{where}: {sample}: the gold answer {gold!r} is not in its 'options' {options!r}; {fix}")
    for media in record.get("media", []):
        if not (data_dir / media).is_file():
            raise DataError(f"{where}: {sample}: media file {data_dir / media} does not exist; {fix}")
    return Sample(**record)


def split_path(data_dir: str | Path, task: str, split: str) -> Path:
    return Path(data_dir) / task / f"{split}.jsonl"


def load_split(data_dir: str | Path, tasks, split: str) -> list[Sample]:
    """The samples of one split of several tasks, task after task."""
    return [sample for task in tasks for sample in read_jsonl(split_path(data_dir, task, split))]


def perception_path(data_dir: str | Path, modality: str) -> Path:
    return Path(data_dir) / "perception" / f"{modality}.jsonl"
