"""Backbone families, one module each (``base.BackboneFamily``): how a family assembles its untrained model."""

from mmcl.core.registry import Registry

BACKBONES = Registry("backbone family", __name__, shared=("base",))
