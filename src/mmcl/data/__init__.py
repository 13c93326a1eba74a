"""Task families (how a task is prompted and scored) and suite generators, one module each."""

from mmcl.registry import Registry

TASK_FAMILIES = Registry("task family", __name__ + ".families")
GENERATORS = Registry("generator", __name__ + ".generators")
