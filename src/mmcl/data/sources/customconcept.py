"""The image-generation prompts of MoDE's inter-modal evaluation, from CustomConcept101 (Kumari et al.
2023): 101 concepts with 3-15 real photos each, and a prompt file per kind of concept::

    dataset.json           [{"class_prompt": "cat", "instance_data_dir": "./benchmark_dataset/pet_cat1",
                             "prompt_filename": "prompts/cat.txt", ...}, ...]
    prompts/cat.txt        a prompt a line, "{}" where the concept goes: "photo of a {}.", ...
    benchmark_dataset.zip  benchmark_dataset/pet_cat1/<photos>

A sample is one prompt of one concept, "{}" filled with its class ("photo of a cat."), and the concept's
first photo in name order as its target image, linked as ``media/<concept folder>-<photo>`` (photo names
repeat across concepts). ``prompts`` takes the first lines of each prompt file: 1 gives MoDE's 101 prompts,
one per concept; null all of them (20 per concept). A concept without its prompt file is skipped and
counted ("no answer").

No task family generates images yet (issue 6 adds one), so a sample is stored as captioning, the prompt
being the photo's caption under the instruction "describe the image."; a generation family reads it the
other way round, prompt in, photo as target. An evaluation set: it has only a test split, so no suite task
trains on it.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from mmcl.config.schema import DatasetConfig
from mmcl.data import SOURCES
from mmcl.data.sources.base import CAPTION_INSTRUCTION, IMAGE_SUFFIXES, Adapter, DatasetWriter, Sources, read_json


@dataclass
class CustomConceptConfig(DatasetConfig):
    adapter: str = "customconcept"
    concepts: str = "dataset.json"  # the concepts, with their photo folder and prompt file
    prompts: int | None = 1  # prompts per concept: the first lines of its prompt file (null: every line)


@SOURCES.register("customconcept", CustomConceptConfig)
class CustomConcept(Adapter):
    family, modality = "captioning", "image"
    splits = ("test",)
    config: CustomConceptConfig

    def convert(self, sources: Sources, writer: DatasetWriter) -> None:
        photos = defaultdict(list)  # concept folder -> its photos
        for path in sources.media_files(IMAGE_SUFFIXES):
            photos[path.parent.name].append(path)
        instruction = CAPTION_INSTRUCTION.format(modality=self.modality)
        concepts_file = sources.file(self.config.concepts)
        for concept in read_json(concepts_file):
            folder = Path(concept["instance_data_dir"]).name
            photo = min(photos[folder], key=lambda path: path.name, default=None)
            prompt_file = concepts_file.parent / concept["prompt_filename"]
            lines = prompt_file.read_text().splitlines() if prompt_file.is_file() else []
            prompts = [line.replace("{}", concept["class_prompt"]) for line in lines if line.strip()]
            # Without a prompt file, one sample with the empty prompt: no answer, so skipped and counted.
            wanted = f"a photo in {folder}" if photo is None else concept["prompt_filename"]
            name = f"{folder}-{photo.name}" if photo else None
            for i, prompt in enumerate(prompts[: self.config.prompts] or [""]):
                writer.add("test", f"{folder}-{i}", instruction, [prompt], photo, wanted, name=name)
