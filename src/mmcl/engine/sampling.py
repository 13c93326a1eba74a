"""Which samples each optimizer step trains on: a pure function of (seed, step).

Epoch ``e`` is a permutation of the dataset seeded by ``(seed, e)``; step ``s`` takes the next slice
of it. Because no sampler state carries over from one step to the next, a stage resumed at step
``k`` sees exactly the batches an uninterrupted run sees from step ``k`` on. The sampler yields
global batches of *positions* (``epoch * len(dataset) + index``, see ``batching.Item.draw``);
under several processes Accelerate splits each global batch between them.

``GroupedStepSampler`` (``train.group_by_length``) cuts the same permutation into batches of one
modality and similar length instead, so that a batch pads less; it too derives every epoch from
``(seed, e)`` alone.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterator, Sequence

import torch
from torch.utils.data import Sampler

GROUP = 50  # batches per length-sorted chunk: long enough to find similar lengths, short enough to stay random


class StepSampler(Sampler[list[int]]):
    def __init__(self, size: int, batch_size: int, steps: int, seed: int, start: int = 0):
        if size == 0:
            raise ValueError("no training samples")
        self.size, self.batch_size, self.steps, self.seed, self.start = size, batch_size, steps, seed, start
        self.per_epoch = max(1, size // batch_size)  # a smaller dataset gives one (short) batch per epoch

    def generator(self, epoch: int) -> torch.Generator:
        return torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)

    def batch(self, step: int) -> list[int]:
        epoch, slot = divmod(step, self.per_epoch)
        order = torch.randperm(self.size, generator=self.generator(epoch))
        picked = order[slot * self.batch_size : (slot + 1) * self.batch_size]
        return [epoch * self.size + int(i) for i in picked]

    def __iter__(self) -> Iterator[list[int]]:
        for step in range(self.start, self.steps):
            yield self.batch(step)

    def __len__(self) -> int:
        return self.steps - self.start


class GroupedStepSampler(StepSampler):
    """Batches of one modality and similar length, from ``keys[i] = (modality, length)`` of each sample.

    Epoch ``e``: the permutation of ``StepSampler``, split by modality (keeping its order); each
    modality's samples in chunks of ``GROUP`` batches, each chunk sorted by length and cut into
    batches; the tails of the modalities (fewer than a batch each) joined into the epoch's only mixed
    batches (at most one fewer than there are modalities), the last partial batch left out as
    ``StepSampler`` leaves it out; then the batches in an order shuffled by the epoch's seed. An epoch
    has as many batches as ``StepSampler``'s and draws every sample at most once.
    """

    def __init__(self, keys: Sequence[tuple[Hashable, int]], batch_size: int, steps: int, seed: int, start: int = 0):
        super().__init__(len(keys), batch_size, steps, seed, start)
        self.keys = list(keys)
        self._epoch: tuple[int, list[list[int]]] | None = None  # a cache: an epoch's batches depend on e alone

    def epoch_batches(self, epoch: int) -> list[list[int]]:
        if self._epoch is not None and self._epoch[0] == epoch:
            return self._epoch[1]
        generator = self.generator(epoch)
        order = torch.randperm(self.size, generator=generator).tolist()
        by_modality: dict[Hashable, list[int]] = {}
        for index in order:
            by_modality.setdefault(self.keys[index][0], []).append(index)
        size, batches, tails = self.batch_size, [], []
        for modality in sorted(by_modality, key=str):
            samples = by_modality[modality]
            for start in range(0, len(samples), size * GROUP):
                chunk = sorted(samples[start : start + size * GROUP], key=lambda i: self.keys[i][1])  # stable
                full = len(chunk) // size * size
                batches += [chunk[i : i + size] for i in range(0, full, size)]
                tails += chunk[full:]
        batches += [tails[i : i + size] for i in range(0, len(tails) // size * size, size)]
        if not batches:  # fewer samples than a batch: one short batch, as StepSampler's
            batches = [tails]
        shuffled = [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]
        self._epoch = (epoch, shuffled)
        return shuffled

    def batch(self, step: int) -> list[int]:
        epoch, slot = divmod(step, self.per_epoch)
        return [epoch * self.size + i for i in self.epoch_batches(epoch)[slot]]
