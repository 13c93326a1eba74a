"""Samples -> model inputs.

A training sequence is ``[bos] <media placeholders> instruction <answer> target [eos]``; only the
target and ``[eos]`` are supervised (unless ``supervise_prompt``: stage 0 is plain language
modelling). A multiple-choice sample is scored as one sequence per option,
``[bos] <media placeholders> instruction <answer> option``, labelled on the option's tokens. Each
media placeholder is repeated as many times as its encoder yields tokens, so that
``MultimodalLM.embed`` can replace them one for one; audio padded to its encoder's window (Whisper's
30 s) gets only the positions of its real length (``Item.share``). Batches may mix modalities (joint training):
media tensors are grouped per modality in sample order.

A unified backbone (``mmcl.models.backbones.unified``) loads an image as its token ids (``<img> codes </img>``),
which go into the sequence as they are, in place of the placeholders; for a generation task
(``TaskFamily.media_in_target``) they are the target instead of part of the prompt.

Training draws are *positions* ``epoch * len(dataset) + index`` (see ``mmcl.engine.sampling``), and
everything random about a draw (which reference caption is the target) is seeded by its position, so
a batch is a pure function of the step: a resumed run sees exactly the batches it would have seen.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import NamedTuple

import torch
from torch.nn.utils.rnn import pad_sequence
from torch.utils.data import Dataset

from mmcl.data.families import TaskFamily
from mmcl.data.media import MediaProcessor, window_positions
from mmcl.data.records import Sample
from mmcl.data.vocab import ANSWER_TOKEN, IGNORE, MEDIA_TOKENS


class Item(NamedTuple):
    sample: Sample
    media: torch.Tensor | None  # encoder input (floats), or token ids (a unified backbone's image)
    draw: int  # the position it was drawn at: seeds the random choices about it
    share: float | None = None  # of its encoder's input window the media fills (padded audio); None: all


def is_tokens(media: torch.Tensor | None) -> bool:
    return media is not None and not media.is_floating_point()


class InstructionDataset(Dataset):
    def __init__(self, samples: list[Sample], data_dir: Path, processor: MediaProcessor):
        self.samples = samples
        self.data_dir = Path(data_dir)
        self.processor = processor

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, position: int) -> Item:
        sample = self.samples[position % len(self.samples)]
        if not sample.media:
            return Item(sample, None, position)
        path = self.data_dir / sample.media[0]
        if not path.exists():
            raise FileNotFoundError(f"{path}: media file of sample {sample.id} is missing; re-run `mmcl prepare`")
        media = self.processor.load(sample.modality, path)
        return Item(sample, media, position, self.processor.window_share(sample.modality, path))


class Collator:
    def __init__(
        self,
        tokenizer,
        num_media_tokens: dict[str, int],
        families: dict[str, TaskFamily],
        seed: int = 0,
        supervise_prompt: bool = False,
        max_length: int | None = None,
    ):
        self.tokenizer = tokenizer
        self.num_media_tokens = num_media_tokens
        self.families = families
        self.seed = seed
        self.supervise_prompt = supervise_prompt
        self.max_length = max_length
        self.answer_id = tokenizer.convert_tokens_to_ids(ANSWER_TOKEN)
        self.media_ids = {tokenizer.convert_tokens_to_ids(token) for token in MEDIA_TOKENS.values()}

    @classmethod
    def for_model(cls, model, families: dict[str, TaskFamily], **options) -> Collator:
        """A collator for ``model``'s tokenizer and media tokens that cuts sequences at its context length."""
        max_length = model.llm.config.max_position_embeddings
        return cls(model.tokenizer, model.num_media_tokens, families, max_length=max_length, **options)

    def _words(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def prompt_ids(self, sample: Sample, media: torch.Tensor | None = None, share: float | None = None) -> list[int]:
        ids = [] if self.tokenizer.bos_token_id is None else [self.tokenizer.bos_token_id]
        if sample.modality in MEDIA_TOKENS and not self.families[sample.task].media_in_target:
            if is_tokens(media):
                ids += media.tolist()
            else:
                placeholder = self.tokenizer.convert_tokens_to_ids(MEDIA_TOKENS[sample.modality])
                ids += [placeholder] * window_positions(self.num_media_tokens[sample.modality], share)
        return ids + self._words(sample.instruction) + [self.answer_id]

    def prompt_length(self, sample: Sample) -> int:
        """A sample's prompt in tokens, with its longest option (what evaluation sorts batches by)."""
        longest = max((len(self._words(option)) for option in sample.options or ()), default=0)
        return len(self.prompt_ids(sample)) + longest

    def _target(self, sample: Sample, media: torch.Tensor | None, rng: random.Random) -> list[int]:
        family = self.families[sample.task]
        if not family.media_in_target:
            return self._words(family.target(sample, rng))
        if not is_tokens(media):
            raise ValueError(
                f"sample {sample.id}: task '{sample.task}' generates images, which only a backbone that writes "
                "image tokens can learn; use a `family: unified` backbone for this suite"
            )
        return media.tolist()

    def _check_length(self, sample: Sample, length: int) -> None:
        if self.max_length and length > self.max_length:
            raise ValueError(
                f"sample {sample.id}: {length} tokens exceed the LLM's {self.max_length} positions; "
                "shorten the instruction or raise the backbone's max_positions"
            )

    def _media(self, items: list[Item]) -> dict[str, torch.Tensor]:
        grouped: dict[str, list[torch.Tensor]] = {}
        for item in items:
            if item.media is not None and not is_tokens(item.media):
                grouped.setdefault(item.sample.modality, []).append(item.media)
        # cached audio features are as long as their clips: padded to the longest (embed reads each row's own)
        return {modality: pad_sequence(tensors, batch_first=True) for modality, tensors in grouped.items()}

    def _right_padded(self, sequences: list[list[int]], labels: list[list[int]], items: list[Item]) -> dict:
        """Sequences and their labels padded on the right, with the media of ``items`` (one per sequence)."""
        width = max(map(len, sequences))
        pad = self.tokenizer.pad_token_id
        return {
            "input_ids": torch.tensor([s + [pad] * (width - len(s)) for s in sequences]),
            "attention_mask": torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s in sequences]),
            "labels": torch.tensor([lab + [IGNORE] * (width - len(lab)) for lab in labels]),
            "media": self._media(items),
        }

    def train_batch(self, items: list[Item]) -> dict:
        """Right-padded sequences with labels on the answer (or everything, for stage-0 LM training)."""
        sequences, labels = [], []
        for sample, media, draw, share in items:
            prompt = self.prompt_ids(sample, media, share)
            rng = random.Random(f"{self.seed}:{draw}")
            target = [*self._target(sample, media, rng), self.tokenizer.eos_token_id]
            self._check_length(sample, len(prompt) + len(target))
            sequences.append(prompt + target)
            prompt_labels = prompt if self.supervise_prompt else [IGNORE] * len(prompt)
            labels.append([IGNORE if t in self.media_ids else t for t in prompt_labels] + target)
        return self._right_padded(sequences, labels, items)

    def choice_batch(self, items: list[Item]) -> dict:
        """One row per (sample, option), in sample then option order: the prompt followed by the option,
        labelled on the option's tokens only (no ``[eos]``, as lm-evaluation-harness scores a continuation)."""
        sequences, labels, rows = [], [], []
        for item in items:
            prompt = self.prompt_ids(item.sample, item.media, item.share)
            for option in item.sample.options:
                continuation = self._words(option)
                self._check_length(item.sample, len(prompt) + len(continuation))
                sequences.append(prompt + continuation)
                labels.append([IGNORE] * len(prompt) + continuation)
                rows.append(item)
        return self._right_padded(sequences, labels, rows)

    def generation_batch(self, items: list[Item]) -> dict:
        """Left-padded prompts (generation appends to the right end)."""
        prompts = [self.prompt_ids(item.sample, item.media, item.share) for item in items]
        for item, prompt in zip(items, prompts, strict=True):
            self._check_length(item.sample, len(prompt))
        width = max(map(len, prompts))
        pad = self.tokenizer.pad_token_id
        return {
            "input_ids": torch.tensor([[pad] * (width - len(p)) + p for p in prompts]),
            "attention_mask": torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts]),
            "media": self._media(items),
        }
