"""Task families (how a task is prompted and scored), suite generators and dataset adapters, one module each."""

from mmcl.core.registry import Registry

TASK_FAMILIES = Registry("task family", __name__ + ".families")
GENERATORS = Registry("generator", __name__ + ".generators")
SOURCES = Registry("dataset adapter", __name__ + ".sources", shared=("base",))
