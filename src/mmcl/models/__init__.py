"""Backbone families (one module each) and the multimodal LLM they assemble (``mllm``)."""

from mmcl.registry import Registry

BACKBONES = Registry(
    "backbone family", __name__, shared=("mllm", "checkpoint", "family", "unified_lm", "vq", "judge", "image_models")
)
