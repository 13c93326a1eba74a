"""Which samples each optimizer step trains on: a pure function of (seed, step).

Epoch ``e`` is a permutation of the dataset seeded by ``(seed, e)``; step ``s`` takes the next slice
of it. Because no sampler state carries over from one step to the next, a stage resumed at step
``k`` sees exactly the batches an uninterrupted run sees from step ``k`` on. The sampler yields
global batches of *positions* (``epoch * len(dataset) + index``, see ``batching.Item.draw``);
under several processes Accelerate splits each global batch between them.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import Sampler


class StepSampler(Sampler[list[int]]):
    def __init__(self, size: int, batch_size: int, steps: int, seed: int, start: int = 0):
        if size == 0:
            raise ValueError("no training samples")
        self.size, self.batch_size, self.steps, self.seed, self.start = size, batch_size, steps, seed, start
        self.per_epoch = max(1, size // batch_size)  # a smaller dataset gives one (short) batch per epoch

    def batch(self, step: int) -> list[int]:
        epoch, slot = divmod(step, self.per_epoch)
        order = torch.randperm(self.size, generator=torch.Generator().manual_seed(self.seed * 1_000_003 + epoch))
        picked = order[slot * self.batch_size : (slot + 1) * self.batch_size]
        return [epoch * self.size + int(i) for i in picked]

    def __iter__(self) -> Iterator[list[int]]:
        for step in range(self.start, self.steps):
            yield self.batch(step)

    def __len__(self) -> int:
        return self.steps - self.start
