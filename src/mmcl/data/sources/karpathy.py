"""Image captioning in Karpathy's split files (``caption_datasets.zip``: ``dataset_flickr30k.json``, also
``dataset_coco.json`` and ``dataset_flickr8k.json``)::

    {"images": [{"filename": "1000092795.jpg", "split": "train",
                 "sentences": [{"raw": "Two young guys with shaggy hair ...", ...}, ...]}, ...]}

Splits train (and COCO's restval, trained on too), val and test; every ``raw`` sentence is a reference
caption. The images are found by file name anywhere among the dataset's files.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mmcl.config.schema import DatasetConfig
from mmcl.data import SOURCES
from mmcl.data.sources.base import CAPTION_INSTRUCTION, IMAGE_SUFFIXES, Adapter, DatasetWriter, Sources, read_json

SPLIT_OF = {"train": "train", "restval": "train", "val": "val", "test": "test"}


@dataclass
class KarpathyConfig(DatasetConfig):
    adapter: str = "karpathy"
    captions: str = "dataset_flickr30k.json"  # the split file to read


@SOURCES.register("karpathy", KarpathyConfig)
class Karpathy(Adapter):
    family, modality = "captioning", "image"
    config: KarpathyConfig

    def convert(self, sources: Sources, writer: DatasetWriter) -> None:
        images = sources.media(IMAGE_SUFFIXES)
        instruction = CAPTION_INSTRUCTION.format(modality=self.modality)
        for entry in read_json(sources.file(self.config.captions))["images"]:
            name = entry["filename"]
            references = [sentence["raw"] for sentence in entry["sentences"]]
            writer.add(SPLIT_OF[entry["split"]], Path(name).stem, instruction, references, images.get(name), name)
