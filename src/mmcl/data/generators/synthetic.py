"""What the embedded generators share: seeded streams, files in the common format, perception sets.

A generator subclass says how one sample of a task is drawn (``draw``) and, for suites whose
encoders start random, one tagged perception sample (``perception_sample``); this class writes
``<task>/<split>.jsonl``, ``media/<task>/<split>/*``, ``perception/<encoder>.jsonl`` and
``vocab.txt`` (every word of every instruction, answer and option), and returns a summary.

Each (task, split) draws from its own RNG stream, seeded by a stable hash of (generator, seed, task,
split): adding a task leaves the other tasks' bytes unchanged. Test media never repeat a train file
of the same task, and perception media never repeat any test file.
"""

from __future__ import annotations

import hashlib
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mmcl.config.schema import SuiteConfig, TaskConfig, WorldConfig
from mmcl.core.io import write_text
from mmcl.core.registry import ConfigError, closest
from mmcl.data.records import ENCODER_OF, Sample, perception_path, split_path, write_jsonl
from mmcl.data.vocab import words_of

SPLITS = ("train", "test")
MAX_REDRAWS = 1000  # a test sample whose media repeat a train file is drawn again, up to this often


@dataclass(frozen=True)
class Drawn:
    """One sample as a generator draws it, before it gets its id and media path."""

    instruction: str
    answers: list[str]
    media: bytes | None = None  # the media file's bytes (None: a text-only sample)
    extension: str = ""  # the media file's extension
    options: list[str] | None = None  # multiple choice: the options, answers[0] among them


@dataclass(frozen=True)
class Tagged:
    """A perception sample: media bytes and the attribute tags an encoder learns to predict from them."""

    media: bytes
    extension: str
    tags: list[str]


def check_tasks(generator: str, suite: SuiteConfig, tasks: dict[str, tuple[str, str]]) -> None:
    """Every task the suite lists is one of the generator's ``tasks`` (name -> (family, modality)), as it is."""
    for task, config in suite.tasks.items():
        if task not in tasks:
            raise ConfigError(
                f"{generator} task '{task}': not a task it writes{closest(task, tasks)}; its tasks: {', '.join(tasks)}"
            )
        if (config.family, config.modality) != tasks[task]:
            family, modality = tasks[task]
            raise ConfigError(
                f"{generator} task '{task}': is ({family}, {modality}), got ({config.family}, {config.modality}); "
                f"set its family to {family} and its modality to {modality}"
            )


class SyntheticSuite:
    """Writes every task of a suite from ``draw``; subclasses are registered in ``GENERATORS``."""

    name: str  # the registered name (set by the registry): part of every stream's seed
    reads_datasets = False  # it generates every task itself

    def __init__(self, suite: SuiteConfig):
        self.suite = suite

    def draw(self, task: str, config: TaskConfig, rng: np.random.Generator, avoid: set[bytes]) -> Drawn:
        """One sample of ``task``; its media bytes (if any) must not be among ``avoid`` (see ``redraw``)."""
        raise NotImplementedError

    def perception_sample(self, encoder: str, rng: np.random.Generator, avoid: set[bytes]) -> Tagged:
        """One tagged sample of the perception set of ``encoder`` (image, audio)."""
        raise NotImplementedError

    def stream(self, task: str, split: str) -> np.random.Generator:
        """An RNG stream of its own per (seed, task, split), from a hash that is stable across runs."""
        digest = hashlib.sha256(f"{self.name}/{self.suite.seed}/{task}/{split}".encode()).digest()
        return np.random.default_rng(int.from_bytes(digest[:16], "little"))

    def redraw(
        self,
        sample: Callable[[np.random.Generator, WorldConfig], Any],
        encode: Callable[[Any, WorldConfig, np.random.Generator], bytes],
        rng: np.random.Generator,
        avoid: set[bytes],
    ) -> tuple[Any, bytes]:
        """A world state and its media bytes, drawn again while the bytes are among ``avoid``."""
        for _ in range(MAX_REDRAWS):
            state = sample(rng, self.suite.world)
            data = encode(state, self.suite.world, rng)
            if hashlib.sha256(data).digest() not in avoid:
                return state, data
        raise ConfigError(f"{self.name}: the world is too small for these split sizes (test repeats train)")

    def generate(self, out_dir: Path) -> dict:
        """Write every task of the suite into out_dir and return a summary dict."""
        started = time.perf_counter()
        out_dir = Path(out_dir)
        sizes = {"train": self.suite.sizes.train, "test": self.suite.sizes.test}
        words: set[str] = set()
        files = 1  # vocab.txt
        tasks = {}
        test_media: set[bytes] = set()
        for task, config in self.suite.tasks.items():
            seen: set[bytes] = set()  # after the train split: its media digests, which test must avoid
            splits = {}
            for split in SPLITS:
                samples, seen = self._write_split(task, config, split, sizes[split], out_dir, avoid=seen)
                if split == "test":
                    test_media |= seen
                for sample in samples:
                    words |= words_of(sample)
                files += 1 + sum(len(sample.media) for sample in samples)
                splits[split] = _split_summary(samples)
            tasks[task] = {"family": config.family, "modality": config.modality, "splits": splits}
        perception = {}
        encoders = {ENCODER_OF[c.modality] for c in self.suite.tasks.values() if c.modality in ENCODER_OF}
        for encoder in sorted(encoders) if self.suite.sizes.pretrain else []:
            perception[encoder] = self._write_perception(encoder, out_dir, avoid=test_media)
            files += 1 + perception[encoder]
        write_text(out_dir / "vocab.txt", "".join(f"{word}\n" for word in sorted(words)))
        return {
            "tasks": tasks,
            "perception": perception,
            "files": files,
            "seconds": round(time.perf_counter() - started, 3),
        }

    def _write_perception(self, encoder: str, out_dir: Path, avoid: set[bytes]) -> int:
        """Media with their attribute tags (as ``answers``) for pretraining a random-init encoder;
        none repeats a test file. Returns the number of samples."""
        size = self.suite.sizes.pretrain
        rng = self.stream("perception", encoder)
        (out_dir / "media" / "perception" / encoder).mkdir(parents=True, exist_ok=True)
        samples = []
        for index in range(size):
            tagged = self.perception_sample(encoder, rng, avoid)
            relative = f"media/perception/{encoder}/{index:05d}.{tagged.extension}"
            (out_dir / relative).write_bytes(tagged.media)
            sample_id = f"perception-{encoder}-{index:05d}"
            samples.append(Sample(sample_id, "perception", encoder, "", tagged.tags, [relative]))
        write_jsonl(perception_path(out_dir, encoder), samples)
        return size

    def _write_split(
        self, task: str, config: TaskConfig, split: str, size: int, out_dir: Path, avoid: set[bytes]
    ) -> tuple[list[Sample], set[bytes]]:
        """Samples of one split (media written, JSONL written) and the digests of its media files."""
        rng = self.stream(task, split)
        width = max(5, len(str(size - 1)))
        if config.modality != "text":
            (out_dir / "media" / task / split).mkdir(parents=True, exist_ok=True)
        digests: set[bytes] = set()
        samples = []
        for index in range(size):
            name = f"{index:0{width}d}"
            drawn = self.draw(task, config, rng, avoid)
            media = []
            if drawn.media is not None:
                relative = f"media/{task}/{split}/{name}.{drawn.extension}"
                (out_dir / relative).write_bytes(drawn.media)
                digests.add(hashlib.sha256(drawn.media).digest())
                media.append(relative)
            sample_id = f"{task}-{split}-{name}"
            samples.append(
                Sample(sample_id, task, config.modality, drawn.instruction, drawn.answers, media, drawn.options)
            )
        write_jsonl(split_path(out_dir, task, split), samples)
        return samples, digests


def _split_summary(samples: list[Sample]) -> dict:
    targets = Counter(" | ".join(sample.answers) for sample in samples)
    return {
        "samples": len(samples),
        "distinct_answers": len(targets),  # distinct answers (QA) or reference sets (captioning)
        "majority_share": round(max(targets.values()) / len(samples), 4) if samples else 0.0,
    }
