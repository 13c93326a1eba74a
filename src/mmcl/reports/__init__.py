"""Reports from per-run result files: tidy CSVs, per-grid-cell tables (md/csv/tex), heatmaps, curves.

Entry point: :func:`build_reports`.
"""

from mmcl.reports.build import build_reports

__all__ = ["build_reports"]
