"""LLaVA-1.5's alignment captions (LCS-558K: LAION/CC/SBU images with BLIP captions), in LLaVA's
conversation format (``blip_laion_cc_sbu_558k.json``, images in ``images.zip``)::

    [{"id": "004539375", "image": "00453/004539375.jpg",
      "conversations": [{"from": "human", "value": "Render a clear and concise summary of the photo.\\n<image>"},
                        {"from": "gpt", "value": "select luxury furniture 3 - inch gel memory foam mattress topper"}]}]

A captioning dataset, the data of the study's alignment stage: the instruction is the sample's own prompt
(LLaVA varies it) without the ``<image>`` placeholder, the reference its caption. The source has no test
split: the ``test_images`` images with the smallest SHA-256 of their path are held out as one.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mmcl.config.ranges import positive
from mmcl.config.schema import DatasetConfig
from mmcl.data import SOURCES
from mmcl.data.sources.base import IMAGE_SUFFIXES, Adapter, DatasetWriter, Sources, image_splits, read_json
from mmcl.data.sources.llava_mix import turns


@dataclass
class LlavaPretrainConfig(DatasetConfig):
    adapter: str = "llava_pretrain"
    captions: str = "blip_laion_cc_sbu_558k.json"
    test_images: int = positive(1000)  # images held out as the test split


@SOURCES.register("llava_pretrain", LlavaPretrainConfig)
class LlavaPretrain(Adapter):
    family, modality = "captioning", "image"
    config: LlavaPretrainConfig

    def convert(self, sources: Sources, writer: DatasetWriter) -> None:
        path = sources.file(self.config.captions)
        entries = read_json(path)
        split_of = image_splits(entries, self.config.test_images)
        images = sources.media(IMAGE_SUFFIXES)
        for index, entry in enumerate(entries):
            [(prompt, caption)] = turns(entry, f"{path.name}, item {index} (id {entry['id']})")
            split = split_of(entry)
            name = entry["image"]
            writer.add(split, entry["id"], prompt, [caption], images.get(Path(name).name), name)
