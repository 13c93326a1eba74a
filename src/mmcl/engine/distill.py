"""Distillation from a previous model whose outputs were computed once, by their own job, and cached.

The teacher (the previous stage's model) runs in ``mmcl teach``: for each distillation sequence
(a sample in the common format, its target fixed) it keeps the top-K logits at every supervised
position (those that predict a target token; ``mmcl.models.mllm.supervised_rows``). The training
job rebuilds the same sequences with the same collator and distils on them, so it never holds a
second model in memory and a stage re-run after changing only a loss weight reuses the teacher's outputs.

Stored per set ``<name>``: ``<name>.jsonl`` (the samples) and ``<name>.safetensors``: ``values``
(in the teacher's dtype: float32 on a CPU, so that the cached loss is the live teacher's; bfloat16
on a GPU) and ``indices`` (int32), one row per supervised position of every sequence in order, and
``offsets``, where each sequence's rows start.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from mmcl.core.integrity import CheckpointError
from mmcl.data.records import Sample, read_jsonl, write_jsonl
from mmcl.engine.batching import Collator, InstructionDataset

ROWS = {"rows": "supervised"}  # which positions a set's rows are (sets written before had every attended one)


def topk_kl(student: torch.Tensor, values: torch.Tensor, indices: torch.Tensor, temperature: float) -> torch.Tensor:
    """T² · mean over positions of KL(p_teacher || p_student) at temperature T.

    Both distributions are renormalised on the teacher's top-K tokens at each position (with K equal
    to the vocabulary this is the full KL). ``student``: (positions, vocab) logits; ``values`` and
    ``indices``: (positions, K) teacher logits and their token ids.
    """
    teacher = F.log_softmax(values.float() / temperature, dim=-1)
    student = F.log_softmax(student.float().gather(-1, indices.long()) / temperature, dim=-1)
    kl = (teacher.exp() * (teacher - student)).sum(-1)
    return temperature**2 * kl.mean()


def fixed_target(sample: Sample, target: str) -> Sample:
    """The sample with one answer, so that its training sequence is the same wherever it is built."""
    return Sample(sample.id, sample.task, sample.modality, sample.instruction, [target], list(sample.media))


@dataclass
class DistillSet:
    """Sequences to distil on, with the teacher's top-K logits at their attended positions."""

    samples: list[Sample]
    values: torch.Tensor
    indices: torch.Tensor
    offsets: torch.Tensor  # (len(samples) + 1,)

    def save(self, directory: Path, name: str) -> None:
        write_jsonl(directory / f"{name}.jsonl", self.samples)
        tensors = {"values": self.values, "indices": self.indices, "offsets": self.offsets}
        save_file({k: v.contiguous() for k, v in tensors.items()}, directory / f"{name}.safetensors", ROWS)

    @classmethod
    def load(cls, directory: Path, name: str, data_dir: Path) -> DistillSet:
        """The set ``name`` of a teacher directory; its samples' media are under ``data_dir``."""
        path = directory / f"{name}.safetensors"
        with safe_open(path, "pt") as f:
            if f.metadata() != ROWS:
                raise CheckpointError(
                    f"{path}: teacher outputs of an older mmcl (at every attended position, not only the "
                    "supervised ones); re-run its teach job (`snakemake --forcerun teach`)"
                )
        tensors = load_file(path)
        samples = read_jsonl(directory / f"{name}.jsonl", data_dir)
        return cls(samples, tensors["values"], tensors["indices"], tensors["offsets"])

    def __len__(self) -> int:
        return len(self.samples)

    def rows(self, picks: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """The teacher's values and indices for the sequences ``picks``, in order."""
        spans = [torch.arange(self.offsets[i], self.offsets[i + 1]) for i in picks]
        rows = torch.cat(spans)
        return self.values[rows], self.indices[rows]


@torch.no_grad()
def teach(model, samples: list[Sample], dataset: InstructionDataset, collator: Collator, k: int, batch_size: int = 32):
    """Run the teacher over ``samples`` (targets fixed), in batches on its device, and keep its top-K logits
    at the supervised positions: a DistillSet."""
    model.eval()
    pool = SequencePool(samples, dataset, collator, seed=0)
    device = next(model.parameters()).device
    values, indices, offsets = [], [], [0]
    for start in range(0, len(samples), batch_size):
        outputs = model(**pool.batch(list(range(start, min(start + batch_size, len(samples)))), device))
        top = outputs.logits.topk(min(k, outputs.logits.shape[-1]), dim=-1)
        values.append(top.values.cpu())
        indices.append(top.indices.int().cpu())
        offsets += (offsets[-1] + outputs.rows.sum(1).cumsum(0)).tolist()
    return DistillSet(samples, torch.cat(values), torch.cat(indices), torch.tensor(offsets))


class SequencePool:
    """Sequences trained or distilled on beside the stage's batches: a few per step, collated like them."""

    def __init__(self, samples: list[Sample], dataset: InstructionDataset, collator: Collator, seed: int | str):
        self.samples, self.collator, self.seed = samples, collator, seed
        self.media = InstructionDataset(samples, dataset.data_dir, dataset.processor)

    def picks(self, step: int, count: int) -> list[int]:
        """Which sequences step ``step`` uses: a function of (seed, step), so resuming is exact."""
        return random.Random(f"{self.seed}:{step}").sample(range(len(self.samples)), min(count, len(self.samples)))

    def batch(self, picks: list[int], device: torch.device) -> dict:
        batch = self.collator.train_batch([self.media[i] for i in picks])
        media = {m: t.to(device) for m, t in batch.pop("media").items()}
        return {**{k: v.to(device) for k, v in batch.items()}, "media": media}


class Distiller(SequencePool):
    """At training time: a few sequences of a cached set per step, and the KL to the teacher on them."""

    def __init__(self, cached: DistillSet, dataset: InstructionDataset, collator: Collator, seed: int | str):
        super().__init__(cached.samples, dataset, collator, seed)
        self.cached = cached

    def kl(self, outputs, picks: list[int], temperature: float) -> torch.Tensor:
        """KL to the teacher, given the student's ``SupervisedOutputs`` on ``batch(picks)``."""
        values, indices = self.cached.rows(picks)
        device = outputs.logits.device
        return topk_kl(outputs.logits, values.to(device), indices.to(device), temperature)
