"""Audio captioning from AudioCaps: one CSV per split, a row per caption (one per clip in train, five in
val and test)::

    audiocap_id,youtube_id,start_time,caption
    91139,r1nicOVtvkQ,130,A woman talks nearby as water pours

AudioCaps does not distribute the audio: the clips are cut from YouTube by the user (some are gone;
their samples are skipped and counted) and found anywhere among the dataset's files by the name
``audio_name`` gives them (any of .wav, .flac, .ogg, .mp3).
"""

from __future__ import annotations

import string
from dataclasses import dataclass, field

from mmcl.config.schema import DatasetConfig
from mmcl.core.registry import ConfigError
from mmcl.data import SOURCES
from mmcl.data.sources.base import (
    AUDIO_SUFFIXES,
    CAPTION_INSTRUCTION,
    Adapter,
    DatasetWriter,
    Sources,
    SplitFiles,
    by_stem,
    read_csv,
)

COLUMNS = ("audiocap_id", "youtube_id", "start_time", "caption")


@dataclass
class AudioCapsConfig(DatasetConfig):
    adapter: str = "audiocaps"
    splits: SplitFiles = field(default_factory=lambda: SplitFiles("train.csv", "val.csv", "test.csv"))
    # a clip's file name without extension, from its CSV columns: e.g. "{youtube_id}_{start_time}", "Y{youtube_id}"
    # (a clip with several captions has several audiocap_ids: the first row's is used)
    audio_name: str = "{youtube_id}"


@SOURCES.register("audiocaps", AudioCapsConfig)
class AudioCaps(Adapter):
    family, modality = "captioning", "audio"
    config: AudioCapsConfig

    def __init__(self, config: AudioCapsConfig):
        super().__init__(config)
        fields = {name for _, name, _, _ in string.Formatter().parse(config.audio_name) if name is not None}
        if unknown := sorted(fields - set(COLUMNS[:3])):
            raise ConfigError(
                f"audiocaps audio_name '{config.audio_name}': unknown column {', '.join(unknown)}; "
                f"use {{audiocap_id}}, {{youtube_id}} or {{start_time}}"
            )

    def convert(self, sources: Sources, writer: DatasetWriter) -> None:
        clips = by_stem(sources.media(AUDIO_SUFFIXES))
        instruction = CAPTION_INSTRUCTION.format(modality=self.modality)
        for split, name in self.config.splits.given():
            rows: dict[tuple[str, str], list[dict]] = {}
            for row in read_csv(sources.file(name), COLUMNS):
                rows.setdefault((row["youtube_id"], row["start_time"]), []).append(row)
            for (youtube_id, start), captions in rows.items():
                stem = self.config.audio_name.format(**captions[0])
                references = [row["caption"] for row in captions]
                writer.add(split, f"{youtube_id}_{start}", instruction, references, clips.get(stem), stem)
