"""Gradient conflict between modalities (MoDE's Proposition 1, its Figure 5).

One step on the text loss changes the image loss by ``-η ⟨∇L_img, ∇L_txt⟩`` to first order, so the
cosine between the two gradients, per parameter tensor, shows where text training pulls against image
generation: on tensors both losses reach (modality-coupled adapters such as MoELoRA's experts) it can
be negative; tensors only one loss reaches (MoDE's T-MoE and V-Adapter, on pure batches) have none.
"""

from __future__ import annotations

from typing import NamedTuple

import torch


class Conflict(NamedTuple):
    cosine: float  # NaN when either gradient is zero: at most one loss reaches the tensor
    text_norm: float
    image_norm: float


def gradient_conflicts(model: torch.nn.Module, text_batch: dict, image_batch: dict) -> dict[str, Conflict]:
    """Per trainable tensor (``requires_grad``), the cosine between the gradients of the model's loss on
    ``text_batch`` and on ``image_batch`` (each passed as ``model(**batch)``, with its ``labels``), and
    both gradients' norms. Computed in eval mode (no dropout): a function of the weights and the batches.
    """
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if not trainable:
        raise ValueError("no parameter requires grad: mark the tensors to compare (e.g. a method's trainable ones)")
    names, tensors = zip(*trainable, strict=True)
    training = model.training
    model.eval()
    try:
        text, image = (
            torch.autograd.grad(model(**batch).loss, tensors, allow_unused=True) for batch in (text_batch, image_batch)
        )
    finally:
        model.train(training)
    return {name: _conflict(t, i) for name, t, i in zip(names, text, image, strict=True)}


def _conflict(text: torch.Tensor | None, image: torch.Tensor | None) -> Conflict:
    a = torch.zeros(1, dtype=torch.float64) if text is None else text.double().flatten()
    b = torch.zeros(1, dtype=torch.float64) if image is None else image.double().flatten()
    norms = a.norm() * b.norm()
    cosine = float(a @ b / norms) if text is not None and image is not None and norms > 0 else float("nan")
    return Conflict(cosine, float(a.norm()), float(b.norm()))
