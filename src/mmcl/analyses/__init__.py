"""The analyses a report can hold, one package each, registered by name (``base.Analysis``): each turns
a run's scores into run-level metrics, and a group of runs into tables, figures and an index section.
An analysis applies where a suite has what it measures (text tasks with a linguistic measure, image
generation outside the order, ...), so no job names a study."""

from mmcl.core.registry import Registry

ANALYSES = Registry("analysis", __name__, shared=("base", "runs", "tables", "tidy", "figures"))
