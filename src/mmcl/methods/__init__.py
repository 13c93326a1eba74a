"""Continual-learning methods: one module each, registered by name (see ``base.CLMethod``)."""

from mmcl.core.registry import Registry

METHODS = Registry("method", __name__, shared=("base", "experts"))
