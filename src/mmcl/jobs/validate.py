"""``mmcl validate-config``: check params.yaml and summarise the grid it declares."""

from __future__ import annotations

from mmcl.config.schema import Params
from mmcl.core.plan import plan_stages
from mmcl.methods import METHODS


def summarise(params: Params, what: str, log=print) -> None:
    """Print the grid (or preset, ``what``) as runs, training stages, orders and the alignment stage."""
    grid = params.grid
    stages = {
        (backbone, method, seed, stage.key)
        for backbone in grid.backbones
        for method in grid.methods
        for seed in grid.seeds
        for order in grid.orders
        for stage in plan_stages(METHODS.get(params.methods[method].type).schedule, params.order(order))
    }
    runs = len(grid.backbones) * len(grid.methods) * len(grid.seeds) * len(grid.orders)
    log(f"{params.path}: valid")
    log(
        f"{what}: suite {grid.suite}; {len(grid.orders)} order(s) x {len(grid.methods)} method(s) x "
        f"{len(grid.backbones)} backbone(s) x {len(grid.seeds)} seed(s) = {runs} runs, {len(stages)} training stages"
    )
    for order in grid.orders:
        log(f"  order {order}: {' -> '.join(params.order(order))}")
    if alignment := params.suite().alignment:
        log(
            f"  alignment: '{alignment.task}', {alignment.steps} steps, once per backbone "
            f"({len(grid.backbones)} stage(s)), the start of every run"
        )
