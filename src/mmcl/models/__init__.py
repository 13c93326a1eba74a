"""Model architectures (the LLaVA-style ``mllm``, the image-token ``unified_lm`` and its VQ-VAE, the image
judge), the checkpoint format, and the backbone families that assemble them (``backbones/``)."""
