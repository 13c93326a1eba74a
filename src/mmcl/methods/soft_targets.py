"""Soft targets (label smoothing), from "Improving Multimodal LLMs Using Continual Learning"
(Srivastava et al. 2024), and the study's mSGM ("modified SGM") built from it.

The cross-entropy target of every supervised token is 1−α on the gold token and α/(V−1) on each of
the V−1 other tokens of the vocabulary; positions without a label contribute nothing. The loss is
the mean over supervised tokens, like the usual next-token loss, which it equals at α = 0. The study
uses α = 0.01 (``--soft_alpha``).

It trains what its ``base`` trains (``mmcl.methods.on_base``): ``finetune`` (the LLaVA recipe, the
study's "Soft Targets") or ``lora``. The study's variants are parameter sets of this method, not code:

- mSGM = ``base: lora`` (LoRA + soft targets: what the study's code runs as ``sgm``);
- mSGM + OLF = mSGM with ``freeze_last_block``: the LLM's last transformer block (its LoRA
  parameters included) is not trained ("output layer freezing", ``--olf``);
- mSGM + Rehearsal = mSGM with ``replay_fraction`` (a setting every method has, read by the training
  job: see ``mmcl.data.replay``), so soft targets and rehearsal combine without code of their own.
"""

from __future__ import annotations

from dataclasses import dataclass

from mmcl.config.ranges import PROPER_FRACTION, ranged
from mmcl.methods import METHODS
from mmcl.methods.base import parameters_under
from mmcl.methods.on_base import OnBase, OnBaseConfig


@dataclass
class SoftTargetsConfig(OnBaseConfig):
    base: str = "finetune"  # the study's Soft Targets smooth the LLaVA recipe; mSGM uses lora
    soft_alpha: float = ranged(
        0.01, PROPER_FRACTION
    )  # α: target mass spread over the non-gold tokens (`alpha` is LoRA's scaling)
    freeze_last_block: bool = False  # OLF: leave the LLM's last transformer block untrained


@METHODS.register("soft_targets", SoftTargetsConfig)
class SoftTargets(OnBase):
    config: SoftTargetsConfig

    def trainable_parameters(self, model):
        names = super().trainable_parameters(model)
        if not self.config.freeze_last_block:
            return names
        frozen = set(last_block_parameters(model))
        return [name for name in names if name not in frozen]

    def loss(self, model, batch, outputs, step):
        return soft_target_loss(outputs.logits, outputs.targets, self.config.soft_alpha)


def soft_target_loss(logits, targets, alpha: float):
    """Mean cross-entropy over supervised tokens to targets 1−α (gold) and α/(V−1) (every other token).

    ``logits``: (tokens, V) at the supervised positions (``SupervisedOutputs``); ``targets``: (tokens,) the
    gold token of each.
    """
    import torch.nn.functional as F

    log_probs = F.log_softmax(logits.float(), dim=-1)
    gold = log_probs.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    others = log_probs.sum(-1) - gold
    vocab = log_probs.shape[-1]
    return -((1 - alpha) * gold + alpha / (vocab - 1) * others).mean()


def last_block_parameters(model) -> list[str]:
    """Names of the parameters of the LLM's last transformer block (its LoRA parameters included)."""
    from torch import nn

    layers = model.llm.config.num_hidden_layers
    # The decoder blocks are the LLM's ModuleList of num_hidden_layers modules, whatever its
    # architecture names it (model.layers, gpt_neox.layers, transformer.h, under peft's wrappers).
    for name, module in model.llm.named_modules():
        if isinstance(module, nn.ModuleList) and len(module) == layers:
            return parameters_under(model, f"llm.{name}.{layers - 1}.")
    raise ValueError(f"found no list of {layers} transformer blocks in the LLM ({type(model.llm).__name__})")
