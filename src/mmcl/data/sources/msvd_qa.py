"""Video question answering from MSVD-QA (Xu et al. 2017): one QA file per split and the map from its
video numbers to the clips' YouTube names::

    train_qa.json        [{"id": 0, "video_id": 1, "question": "what is a man doing?", "answer": "play"}, ...]
    youtube_mapping.txt  -4wsuPCjDBc_5_15 vid1

The clips (MSVD's ``YouTubeClips.tar``) are ``<YouTube name>.avi`` anywhere among the dataset's files.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mmcl.config.schema import DatasetConfig
from mmcl.data import SOURCES
from mmcl.data.sources.base import VIDEO_SUFFIXES, Adapter, DatasetWriter, Sources, SplitFiles, by_stem, read_json


@dataclass
class MSVDQAConfig(DatasetConfig):
    adapter: str = "msvd_qa"
    splits: SplitFiles = field(default_factory=lambda: SplitFiles("train_qa.json", "val_qa.json", "test_qa.json"))
    mapping: str = "youtube_mapping.txt"


@SOURCES.register("msvd_qa", MSVDQAConfig)
class MSVDQA(Adapter):
    family, modality = "qa", "video"
    config: MSVDQAConfig

    def convert(self, sources: Sources, writer: DatasetWriter) -> None:
        clip_of = {}
        for line in sources.file(self.config.mapping).read_text().splitlines():
            if line.strip():
                clip, number = line.split()
                clip_of[int(number.removeprefix("vid"))] = clip
        videos = by_stem(sources.media(VIDEO_SUFFIXES))
        for split, name in self.config.splits.given():
            for qa in read_json(sources.file(name)):
                clip = clip_of[int(qa["video_id"])]
                writer.add(split, str(qa["id"]), qa["question"], [qa["answer"]], videos.get(clip), f"{clip}.avi")
