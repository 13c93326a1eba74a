"""Audio question answering from Clotho-AQA: one CSV per split, a row per annotator's answer (three per
question, six questions per file), and the audio files (``audio_files.zip``)::

    file_name,QuestionText,answer,confidence
    Creek and frogs.wav,Are there birds chirping?,yes,yes

A sample is one question about one file, with its annotators' answers, the most frequent first: exact
match accepts any of them and training targets the most frequent. ``confidence`` is not used.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from mmcl.config.schema import DatasetConfig
from mmcl.data import SOURCES
from mmcl.data.sources.base import AUDIO_SUFFIXES, Adapter, DatasetWriter, Sources, SplitFiles, read_csv

COLUMNS = ("file_name", "QuestionText", "answer")


@dataclass
class ClothoAQAConfig(DatasetConfig):
    adapter: str = "clotho_aqa"
    splits: SplitFiles = field(
        default_factory=lambda: SplitFiles("clotho_aqa_train.csv", "clotho_aqa_val.csv", "clotho_aqa_test.csv")
    )


@SOURCES.register("clotho_aqa", ClothoAQAConfig)
class ClothoAQA(Adapter):
    family, modality = "qa", "audio"
    config: ClothoAQAConfig

    def convert(self, sources: Sources, writer: DatasetWriter) -> None:
        audio = sources.media(AUDIO_SUFFIXES)
        for split, name in self.config.splits.given():
            answers: dict[tuple[str, str], list[str]] = {}
            for row in read_csv(sources.file(name), COLUMNS):
                answers.setdefault((row["file_name"], row["QuestionText"]), []).append(row["answer"])
            asked: Counter = Counter()  # questions so far per file, for the sample keys
            for (file, question), given in answers.items():
                asked[file] += 1
                ranked = [answer for answer, _ in Counter(given).most_common()]
                key = f"{Path(file).stem}-q{asked[file]}"
                writer.add(split, key, question, ranked, audio.get(file), file)
