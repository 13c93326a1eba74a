"""ImageNet classification (ILSVRC2012) as instruction data, the way CoIN asks it: "What is the object in
the image?", answered with the class's name. ImageNet is shared only after a login, so its files have a
``path:``; the default layout is Kaggle's ImageNet Object Localization Challenge archive::

    LOC_synset_mapping.txt    n01440764 tench, Tinca tinca     (a class a line: its synset, then its names)
    ILSVRC/Data/CLS-LOC/train/n01440764/n01440764_10026.JPEG
    ILSVRC/Data/CLS-LOC/val/ILSVRC2012_val_00000001.JPEG
    LOC_val_solution.csv      ImageId,PredictionString           (ILSVRC2012_val_00000001,n01751748 <boxes>)

An image's split is the folder it is in (``folders``: train to train, val to test, as CoIN; the unlabelled
test images are left out) and its class the synset folder it is in, else its row of ``val_labels`` (set
it to null for a val folder sorted into synset folders, as ImageNet's usual preparation scripts leave it;
ImageNet's own ``synset_words.txt`` has the mapping file's format). Its answers are the class's names,
any of which exact match accepts; the first ("tench") is the training target.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from mmcl.config.schema import DatasetConfig
from mmcl.data import SOURCES
from mmcl.data.sources.base import IMAGE_SUFFIXES, Adapter, DatasetWriter, Sources, SplitFiles, read_csv

SYNSET = re.compile(r"n\d{8}")


@dataclass
class ImageNetConfig(DatasetConfig):
    adapter: str = "imagenet"
    synsets: str = "LOC_synset_mapping.txt"  # synset -> names, one class a line
    val_labels: str | None = "LOC_val_solution.csv"  # the class of each image outside a synset folder
    folders: SplitFiles = field(default_factory=lambda: SplitFiles(train="train", test="val"))  # each split's folder
    question: str = "What is the object in the image?"


@SOURCES.register("imagenet", ImageNetConfig)
class ImageNet(Adapter):
    family, modality = "qa", "image"
    config: ImageNetConfig

    def convert(self, sources: Sources, writer: DatasetWriter) -> None:
        names = {}
        for line in sources.file(self.config.synsets).read_text().splitlines():
            if line.strip():
                synset, _, classes = line.partition(" ")
                names[synset] = [name.strip() for name in classes.split(",")]
        labels = {}
        if self.config.val_labels is not None:
            for row in read_csv(sources.file(self.config.val_labels), ("ImageId", "PredictionString")):
                labels[row["ImageId"]] = row["PredictionString"].split()[0]
        split_of = {folder: split for split, folder in vars(self.config.folders).items() if folder is not None}
        for image in sources.media_files(IMAGE_SUFFIXES):
            folder, synset = image.parent, labels.get(image.stem)
            if SYNSET.fullmatch(folder.name):
                folder, synset = folder.parent, folder.name
            if folder.name in split_of:
                answers = names.get(synset, [])  # none: an image without a (known) class, skipped and counted
                writer.add(split_of[folder.name], image.stem, self.config.question, answers, image, image.name)
