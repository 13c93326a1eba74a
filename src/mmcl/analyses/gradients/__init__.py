"""MoDE's gradient-conflict figure (its Figure 5), for suites with image-generation tasks: after each
order's last stage, in the first seed, per tensor every sequential method trains, the cosine between the
gradients of the text loss and the image loss (``mmcl gradients``, one file per method, the report's input)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from mmcl.analyses import ANALYSES
from mmcl.analyses.base import Analysis, ReportContext
from mmcl.analyses.runs import Group, Run, group_dir
from mmcl.config.schema import GridConfig, Params
from mmcl.core import paths
from mmcl.core.plan import plan_stages, prefix_key
from mmcl.data.families import generation_tasks
from mmcl.methods import METHODS

FIGURE = "gradient_conflict.png"


@ANALYSES.register("gradients")
class Gradients(Analysis):
    rank = 30

    def report_inputs(self, params: Params, grid: GridConfig) -> list[str]:
        if not generation_tasks(params.suites[grid.suite]):
            return []
        files = set()
        for method in grid.methods:
            config = params.methods[method]
            schedule = METHODS.get(config.type).schedule
            if schedule != "sequential":
                continue
            for backbone in grid.backbones:
                for order in grid.orders:
                    last = plan_stages(schedule, params.order(order, grid.suite))[-1].key
                    files.add(paths.gradients_file(grid.suite, backbone, method, grid.seeds[0], last))
        return sorted(files)

    def write_report(self, out_dir: Path, groups: dict[Group, list[Run]], context: ReportContext) -> list[Group]:
        """``gradient_conflict.png`` of each group with gradient files (after its order's last stage);
        returns those groups."""
        from mmcl.analyses.figures import save_png
        from mmcl.analyses.gradients.figure import gradient_conflict_figure
        from mmcl.core.io import read_json

        last_stages = {(group[0], group[2], prefix_key(members[0].tasks)): group for group, members in groups.items()}
        found: dict[Group, dict[str, dict]] = {}
        for path in context.inputs.get(self.name, []):
            data = read_json(path)
            group = last_stages.get((data["suite"], data["backbone"], data["stage"]))
            if group is None:
                raise ValueError(f"{path}: stage '{data['stage']}' is the last stage of no order of this report's runs")
            if data["method"] in found.setdefault(group, {}):
                raise ValueError(f"{path}: a second gradient file of method '{data['method']}' for {'/'.join(group)}")
            found[group][data["method"]] = data
        for group, gradients in found.items():
            save_png(gradient_conflict_figure(gradients, context.methods), out_dir / group_dir(group) / FIGURE)
        return sorted(found)

    def index_section(self, groups: Sequence[Group], written: list) -> list[str]:
        figures = [(group_dir(group) / FIGURE).as_posix() for group in written]
        links = ", ".join(f"[{'/'.join(group)}]({figure})" for group, figure in zip(written, figures, strict=True))
        return [
            "",
            "## Gradient conflict (MoDE, Figure 5)",
            "",
            "After each order's last stage, in one seed, per tensor the method trains: the cosine between the "
            "gradients of the text loss (the last task) and the image-generation loss; negative = a text step "
            f"raises the image loss to first order. {links}.",
        ]
