"""mmcl: continual-learning experiments for multimodal LLMs, from params.yaml to forgetting tables."""

__version__ = "0.1.0"
