"""The common instruction format every task is converted to: one JSONL file per split.

Each line is one sample::

    {"id": "image_qa-test-00007", "task": "image_qa", "modality": "image",
     "media": ["media/image_qa/test/00007.png"], "instruction": "what color is the circle ?",
     "answers": ["red"]}

``media`` paths are relative to the suite's data directory (empty for text-only tasks).
``answers`` holds the accepted answers of a QA sample or the reference captions of a captioning
sample; training uses one of them as the target. A generator may also write a perception set per
encoder (``perception/<modality>.jsonl``, ``answers`` = the media's attribute tags) for backbones
whose encoders start from random weights.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from mmcl.io import atomic_path


@dataclass
class Sample:
    id: str
    task: str
    modality: str
    instruction: str
    answers: list[str]
    media: list[str] = field(default_factory=list)


def write_jsonl(path: str | Path, samples: list[Sample]) -> None:
    with atomic_path(path) as tmp, open(tmp, "w") as f:
        for sample in samples:
            f.write(json.dumps(asdict(sample), sort_keys=True) + "\n")


def read_jsonl(path: str | Path) -> list[Sample]:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: missing split file; run the prepare step (`mmcl prepare`) for this suite")
    with open(path) as f:
        return [Sample(**json.loads(line)) for line in f if line.strip()]


def split_path(data_dir: str | Path, task: str, split: str) -> Path:
    return Path(data_dir) / task / f"{split}.jsonl"


def perception_path(data_dir: str | Path, modality: str) -> Path:
    return Path(data_dir) / "perception" / f"{modality}.jsonl"
