"""Which dtype each weight trains in: frozen ones in the compute dtype, trainable ones in fp32.

On a GPU, ``train.precision: auto`` computes in bf16 (Accelerate's autocast). A frozen weight then only
needs to exist in bf16: half the memory of fp32, and no cast at every matmul. A trainable weight keeps
an fp32 copy (the optimizer's master weights), or small updates would round away in bf16. On a CPU,
``auto`` is fp32 and nothing changes.
"""

from __future__ import annotations

import torch

COMPUTE = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": None}


def resolve(precision: str) -> str:
    """``auto`` -> bf16 on a CUDA GPU that supports it, else fp32; any other value as it is."""
    if precision == "auto":
        return "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "fp32"
    return precision


def place_weights(model: torch.nn.Module, precision: str, keep: set[str] = frozenset()) -> None:
    """Cast frozen floating-point parameters to the compute dtype of ``precision``, and trainable ones and
    those named in ``keep`` (what earlier stages trained, saved again with this one's checkpoint) to fp32."""
    compute = COMPUTE[resolve(precision)]
    for name, param in model.named_parameters():
        if not param.is_floating_point():
            continue
        if param.requires_grad or name in keep:
            param.data = param.data.float()
        elif compute is not None:
            param.data = param.data.to(compute)
