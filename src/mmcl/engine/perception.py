"""Perception pretraining: the tiny backbone's stand-in for CLIP and Whisper pretraining.

Real backbones bring encoders pretrained on web-scale data. The tiny backbone's encoders start from
random weights, whose features a tiny LLM cannot learn from in a few hundred steps (measured: image
QA stayed near 55%). So before stage 0 each encoder learns to predict the attribute tags of its
suite's perception set (multi-label, from mean-pooled tokens through a throw-away linear head) and
is frozen again. Projectors stay untrained: every continual stage still has to align its modality
with the LLM.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from mmcl.data.media import MediaProcessor
from mmcl.data.records import perception_path, read_jsonl
from mmcl.engine.small_loop import SmallFit, fit_small
from mmcl.models.backbones.base import PerceptionSettings
from mmcl.models.mllm import MultimodalLM

HELD_OUT = 0.1  # share of the perception set kept out of training to measure the encoder
WEIGHT_DECAY = 0.01


def pretrain_encoders(
    model: MultimodalLM,
    processor: MediaProcessor,
    data_dir: Path,
    settings: dict[str, PerceptionSettings],
    seed: int,
    log=print,
) -> dict[str, dict]:
    """Train each encoder named in ``settings`` on its perception set; returns per-encoder stats."""
    stats = {}
    for modality, config in settings.items():
        path = perception_path(data_dir, modality)
        if not path.exists():
            raise FileNotFoundError(
                f"{path}: no perception set to pretrain the {modality} encoder; set the suite's "
                "sizes.pretrain > 0 (and re-run prepare) or drop the backbone's encoder_pretraining"
            )
        samples = read_jsonl(path)
        inputs = torch.stack([processor.load(modality, Path(data_dir) / s.media[0]) for s in samples])
        vocab = sorted({tag for s in samples for tag in s.answers})
        targets = torch.zeros(len(samples), len(vocab))
        for row, sample in enumerate(samples):
            targets[row, [vocab.index(tag) for tag in sample.answers]] = 1.0
        stats[modality] = _fit_tags(model.encoders[modality], inputs, targets, config, seed, log)
        log(f"perception pretraining of the {modality} encoder: {stats[modality]}")
    return stats


def _fit_tags(encoder: nn.Module, inputs, targets, config: PerceptionSettings, seed: int, log) -> dict:
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(inputs), generator=generator)
    n_train = len(inputs) - max(1, int(len(inputs) * HELD_OUT))
    train, held_out = order[:n_train], order[n_train:]
    head = nn.Sequential(nn.LayerNorm(encoder.width), nn.Linear(encoder.width, targets.shape[1]))

    def logits(rows):
        return head(encoder(inputs[rows]).mean(1))

    def loss_of(picks):
        rows = train[picks]
        return nn.functional.binary_cross_entropy_with_logits(logits(rows), targets[rows])

    encoder.requires_grad_(True)
    settings = SmallFit(config.steps, config.batch_size, config.lr, config.warmup_ratio, WEIGHT_DECAY)
    stats = fit_small(nn.ModuleList([encoder, head]), n_train, loss_of, settings, generator, log)
    encoder.requires_grad_(False)
    with torch.no_grad():
        predicted = logits(held_out) > 0
    return {
        **stats,
        "tags": targets.shape[1],
        # every tag of a held-out sample right: the share of media the encoder "sees" completely
        "held_out_exact": round((predicted == targets[held_out].bool()).all(1).float().mean().item(), 4),
    }
