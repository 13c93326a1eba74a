"""Video captioning from MSR-VTT's caption files, in either schema they are distributed in:

- official (``train_val_videodatainfo.json``, ``test_videodatainfo.json``)::

    {"videos": [{"video_id": "video0", "split": "train"}, ...],
     "sentences": [{"video_id": "video0", "caption": "a car is shown"}, ...]}

- COCO style, without splits (``annotation/MSR_VTT.json`` in the Frozen-in-Time archive)::

    {"annotations": [{"image_id": "video0", "caption": "a car is shown"}, ...]}

  split as the official release does: train video0-6512, val video6513-7009, test video7010-9999.

Every caption of a video is a reference. Videos are ``<video_id>.mp4`` anywhere among the dataset's files.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mmcl.config.schema import DatasetConfig
from mmcl.data import SOURCES
from mmcl.data.sources.base import (
    CAPTION_INSTRUCTION,
    VIDEO_SUFFIXES,
    Adapter,
    DatasetWriter,
    Sources,
    by_stem,
    read_json,
)

SPLIT_OF = {"train": "train", "validate": "val", "val": "val", "test": "test"}
OFFICIAL_SPLITS = ((6513, "train"), (7010, "val"), (10000, "test"))  # (first id after the split, split)


@dataclass
class MSRVTTConfig(DatasetConfig):
    adapter: str = "msrvtt"
    captions: list[str] = field(default_factory=lambda: ["MSR_VTT.json"])  # caption files, read together


def official_split(video_id: str) -> str:
    number = int(video_id.removeprefix("video"))
    for end, split in OFFICIAL_SPLITS:
        if number < end:
            return split
    raise ValueError(f"{video_id} is not in MSR-VTT's official split (video0-video9999)")


@SOURCES.register("msrvtt", MSRVTTConfig)
class MSRVTT(Adapter):
    family, modality = "captioning", "video"
    config: MSRVTTConfig

    def convert(self, sources: Sources, writer: DatasetWriter) -> None:
        splits: dict[str, str] = {}
        captions: dict[str, list[str]] = {}
        for name in self.config.captions:
            data = read_json(sources.file(name))
            splits |= {video["video_id"]: SPLIT_OF[video["split"]] for video in data.get("videos", [])}
            for sentence in data.get("sentences", []) + data.get("annotations", []):
                video_id = sentence.get("video_id", sentence.get("image_id"))
                captions.setdefault(video_id, []).append(sentence["caption"])
        videos = by_stem(sources.media(VIDEO_SUFFIXES))
        instruction = CAPTION_INSTRUCTION.format(modality=self.modality)
        for video_id, references in captions.items():
            split = splits.get(video_id) or official_split(video_id)
            writer.add(split, video_id, instruction, references, videos.get(video_id), f"{video_id}.mp4")
