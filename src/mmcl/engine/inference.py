"""Predictions of a model on a task's test samples, made the way its family asks (``TaskFamily.prediction``):
greedy generation (``generate``), the likeliest of a sample's options (``choose``), or an image drawn and
read back by the suite's judge (``draw``). Used by evaluation and by methods that label data with the
previous model (MoInCL's pseudo-captions).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch.utils.data import DataLoader

from mmcl.config.schema import EvalConfig
from mmcl.data.families import TaskFamily
from mmcl.data.records import Sample
from mmcl.engine.batching import IGNORE, Collator, InstructionDataset
from mmcl.models.image_artifacts import as_pil


@torch.no_grad()
def generate(
    model,
    processor,
    collator: Collator,
    samples: list[Sample],
    data_dir: Path,
    batch_size: int,
    max_new_tokens: int,
    device: torch.device,
) -> dict[str, str]:
    loader = DataLoader(
        InstructionDataset(samples, data_dir, processor),
        batch_size=batch_size,
        collate_fn=collator.generation_batch,
    )
    predictions: list[str] = []
    for batch in loader:
        media = {m: t.to(device) for m, t in batch.pop("media").items()}
        new = model.generate(
            batch["input_ids"].to(device),
            batch["attention_mask"].to(device),
            media,
            max_new_tokens=max_new_tokens,
        )
        predictions += [text.strip() for text in model.tokenizer.batch_decode(new, skip_special_tokens=True)]
    return {sample.id: pred for sample, pred in zip(samples, predictions, strict=True)}


@torch.no_grad()
def draw(
    model, processor, collator: Collator, samples: list[Sample], data_dir: Path, batch_size: int, device, judge
) -> tuple[dict[str, str], dict]:
    """Generation: the image each prompt asks for (one image's codes, greedy), decoded to pixels; returns
    what the judge reads in each (its attribute string) and the images."""
    loader = DataLoader(
        InstructionDataset(samples, data_dir, processor),
        batch_size=batch_size,
        collate_fn=collator.generation_batch,
    )
    readings, images = [], []
    for batch in loader:
        codes = model.generate_image(batch["input_ids"].to(device), batch["attention_mask"].to(device))
        pixels = processor.decode(codes.cpu())
        readings += judge.read(pixels)
        images += as_pil(pixels)
    ids = [sample.id for sample in samples]
    return dict(zip(ids, readings, strict=True)), dict(zip(ids, images, strict=True))


def option_log_likelihoods(model, batch: dict, device: torch.device) -> torch.Tensor:
    """Per row of a ``Collator.choice_batch``: the summed log-probability of its labelled tokens, each
    given every token before it, ``sum_k log softmax(logits[k - 1])[token_k]`` over the labelled k."""
    media = {m: t.to(device) for m, t in batch["media"].items()}
    logits = model(batch["input_ids"].to(device), batch["attention_mask"].to(device), media).logits
    targets = batch["labels"].to(device)[:, 1:]  # position k - 1 predicts token k
    log_probs = torch.log_softmax(logits[:, :-1].float(), dim=-1)
    picked = log_probs.gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return (picked * (targets != IGNORE)).sum(1)


@torch.no_grad()
def choose(
    model, processor, collator: Collator, samples: list[Sample], data_dir: Path, batch_size: int, device
) -> dict[str, str]:
    """Multiple choice as lm-evaluation-harness scores it ("acc"): each sample's prediction is the option
    with the highest summed log-likelihood after the prompt (no length normalisation; ties: the first)."""
    loader = DataLoader(
        InstructionDataset(samples, data_dir, processor),
        batch_size=batch_size,
        collate_fn=collator.choice_batch,
    )
    scores = [score for batch in loader for score in option_log_likelihoods(model, batch, device).tolist()]
    predictions, row = {}, 0
    for sample in samples:
        options = scores[row : row + len(sample.options)]
        predictions[sample.id] = sample.options[options.index(max(options))]
        row += len(sample.options)
    return predictions


def predict(
    family: TaskFamily,
    model,
    processor,
    collator: Collator,
    samples: list[Sample],
    data_dir: Path,
    settings: EvalConfig,
    device: torch.device,
) -> dict[str, str]:
    """Predictions of one task's samples, made the way its family asks (``TaskFamily.prediction``)."""
    if family.prediction == "likelihood":
        return choose(model, processor, collator, samples, data_dir, settings.batch_size, device)
    if family.prediction == "generate":
        return generate(
            model, processor, collator, samples, data_dir, settings.batch_size, settings.max_new_tokens, device
        )
    raise ValueError(
        f"task family {type(family).__name__}: unknown prediction '{family.prediction}' (generate, likelihood; "
        "generate_image is made by `draw`)"
    )
