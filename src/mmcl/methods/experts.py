"""Mixtures of LoRA experts on the LLM's linear layers, optionally split by a hard per-token modality mask.

Shared by ``moelora`` (E routed experts on every token, CoIN's MoELoRA) and ``mode`` (E routed text
experts on text tokens, the T-MoE, plus one LoRA on image tokens, the V-Adapter). An adapted linear
computes ``W0 x + Σ_e g_e(x) (α/r) B_e A_e dropout(x)``, ``g = softmax(router(x))`` (dense, in fp32);
A is Kaiming-uniform and B zero, so an adapted model starts exactly at its base.

Built here rather than on peft: peft's LoRA layers sum their active adapters with fixed scales (or pick
one adapter per *sample* with ``adapter_names``), X-LoRA scales adapters from a separate classifier run
in a second forward pass, Poly routes by task id and Arrow by fixed prototypes. None has a router
learned per layer and per token, nor a per-token choice between two adapter families; a custom peft
layer would have to implement both itself and carry peft's adapter bookkeeping for nothing.

The modality mask reaches the layers without changing the model's signature: a forward pre-hook on the
LLM's decoder reads each call's ``input_ids`` (an image token is one in ``image_token_range``, its start and end
markers included) and stores the mask on a ``Modality`` object every adapted layer shares; a forward
hook clears it, so no layer ever uses a stale mask. Every forward of the LLM must therefore receive
``input_ids``, incremental decoding included (each step's new tokens); a call with only
``inputs_embeds`` has no token ids to read and fails, unless ``every_token_image`` routes the whole
sequence to the image adapter.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn


class LoraExperts(nn.Module):
    """E LoRA experts of rank r mixed by a dense softmax router; with E = 1, a single LoRA (no router)."""

    def __init__(self, in_features: int, out_features: int, experts: int, r: int, alpha: float, dropout: float):
        super().__init__()
        self.scale = alpha / r
        self.dropout = nn.Dropout(dropout)
        self.lora_A = nn.Parameter(torch.empty(experts, r, in_features))
        self.lora_B = nn.Parameter(torch.zeros(experts, out_features, r))
        self.router = nn.Linear(in_features, experts, bias=False) if experts > 1 else None
        for a in self.lora_A:  # each expert's A as nn.Linear (and peft) initialise a weight
            nn.init.kaiming_uniform_(a, a=math.sqrt(5))

    def gates(self, x: torch.Tensor) -> torch.Tensor:
        """(..., E) mixing weights of each token, summing to 1."""
        if self.router is None:
            return x.new_ones(*x.shape[:-1], 1, dtype=torch.float32)
        with torch.autocast(x.device.type, enabled=False):  # the router runs in fp32 even under bf16
            return F.linear(x.float(), self.router.weight.float()).softmax(-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden = torch.einsum("...i,eri->...er", self.dropout(x), self.lora_A.to(x.dtype))
        hidden = hidden * self.gates(x).to(x.dtype).unsqueeze(-1)
        return self.scale * torch.einsum("...er,eor->...o", hidden, self.lora_B.to(x.dtype))


class Modality:
    """Which tokens of the LLM's current forward pass are image tokens; shared by its adapted layers."""

    def __init__(self, image_ids: range):
        if image_ids.step != 1 or not image_ids:
            raise ValueError(f"image_token_range must be a non-empty contiguous range of ids, not {image_ids}")
        self.image_ids = image_ids
        self.image: torch.Tensor | None = None  # (batch, length) bool, during a forward pass
        self.every_token_image = False

    def before_forward(self, module, args, kwargs) -> None:
        ids = kwargs.get("input_ids", args[0] if args else None)
        embeds = kwargs.get("inputs_embeds")
        if self.every_token_image:
            shape = (ids if ids is not None else embeds).shape[:2]
            device = (ids if ids is not None else embeds).device
            self.image = torch.ones(shape, dtype=torch.bool, device=device)
        elif ids is None:
            raise ValueError(
                "the modality-routed adapters (mode) read each token's modality from input_ids, but the LLM was "
                "called with inputs_embeds only; call it with input_ids (images as tokens of its vocabulary)"
            )
        else:
            self.image = (ids >= self.image_ids.start) & (ids < self.image_ids.stop)

    def after_forward(self, module, args, kwargs, output) -> None:
        self.image = None

    def mask(self, tokens: torch.Size) -> torch.Tensor:
        if self.image is None or self.image.shape != tokens:
            found = "none" if self.image is None else tuple(self.image.shape)
            raise RuntimeError(
                f"modality mask {found} does not fit the layer's tokens {tuple(tokens)}: "
                "an adapted layer ran outside a forward pass of the LLM it was attached to"
            )
        return self.image


class ExpertLinear(nn.Module):
    """A frozen linear layer plus routed experts on every token, or on text tokens with a visual LoRA
    on image tokens (when ``modality`` is given): each token goes through exactly one family."""

    def __init__(self, base: nn.Linear, experts: LoraExperts, visual: LoraExperts | None, modality: Modality | None):
        super().__init__()
        if (visual is None) != (modality is None):
            raise ValueError("a visual adapter needs a modality mask, and a mask needs a visual adapter")
        self.base, self.experts, self.visual, self.modality = base, experts, visual, modality
        self.enabled = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.base(x)
        if not self.enabled:
            return out
        if self.visual is None:
            return out + self.experts(x).to(out.dtype)
        image = self.modality.mask(x.shape[:-1])
        delta = torch.zeros_like(out)
        delta[~image] = self.experts(x[~image]).to(out.dtype)
        delta[image] = self.visual(x[image]).to(out.dtype)
        return out + delta


def add_experts(
    llm: nn.Module,
    targets: list[str],
    experts: int,
    r: int,
    alpha: float,
    dropout: float,
    image_ids: range | None = None,
) -> None:
    """Wrap every linear layer of ``llm`` named one of ``targets`` (the last part of its name, e.g.
    ``gate_proj``); with ``image_ids``, image tokens go through a single visual LoRA instead."""
    modality = None if image_ids is None else Modality(image_ids)
    found = [
        (name, module)
        for name, module in llm.named_modules()
        if name.rsplit(".", 1)[-1] in targets and isinstance(module, nn.Linear)
    ]
    if not found:
        raise ValueError(f"no linear layer of {type(llm).__name__} is named one of {targets}; check target_modules")
    for name, linear in found:
        parent = llm.get_submodule(name.rpartition(".")[0])
        dims = (linear.in_features, linear.out_features)
        routed = LoraExperts(*dims, experts, r, alpha, dropout)
        visual = None if modality is None else LoraExperts(*dims, 1, r, alpha, dropout)
        wrapped = ExpertLinear(linear, routed, visual, modality).to(linear.weight.device)
        setattr(parent, name.rpartition(".")[2], wrapped)
    if modality is not None:  # on the decoder, which every forward runs (a loss's runs no LM head at most rows)
        llm.base_model.register_forward_pre_hook(modality.before_forward, with_kwargs=True)
        llm.base_model.register_forward_hook(modality.after_forward, with_kwargs=True)


def expert_layers(model: nn.Module) -> list[ExpertLinear]:
    return [module for module in model.modules() if isinstance(module, ExpertLinear)]


def adapter_parameters(model: nn.Module) -> list[str]:
    """Names of the experts' parameters (routers included), the base layers' left out."""
    return [name for name, _ in model.named_parameters() if ".experts." in name or ".visual." in name]


@contextmanager
def adapters_disabled(model: nn.Module) -> Iterator[None]:
    """Every adapted layer computes its base layer alone: the model as it was before adapters."""
    layers = expert_layers(model)
    states = [layer.enabled for layer in layers]
    for layer in layers:
        layer.enabled = False
    try:
        yield
    finally:
        for layer, state in zip(layers, states, strict=True):
            layer.enabled = state


@contextmanager
def every_token_image(model: nn.Module) -> Iterator[None]:
    """Route every token through the visual adapter, whatever its id (MoDE's distillation pass)."""
    masks = {id(layer.modality): layer.modality for layer in expert_layers(model) if layer.modality is not None}
    if not masks:
        raise ValueError("the model has no modality-routed adapters to route")
    for modality in masks.values():
        modality.every_token_image = True
    try:
        yield
    finally:
        for modality in masks.values():
            modality.every_token_image = False
