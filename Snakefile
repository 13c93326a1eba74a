# mmcl workflow: params.yaml -> data -> stage-0 base model -> sequential CL stages -> evaluation of
# every checkpoint on every task -> per-run accuracy matrices -> reports/.
#
# Rules are thin calls into the `mmcl` command line; the grid logic lives in src/mmcl (jobs/params.py,
# core/plan.py, core/paths.py), imported here without torch because every cluster job parses this file again.
# Another params file: `snakemake --config params=path/to/params.yaml`.

from snakemake.utils import min_version

min_version("9.19")


include: "workflow/rules/common.smk"
include: "workflow/rules/datasets.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/features.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/unified.smk"
include: "workflow/rules/teach.smk"
include: "workflow/rules/replay.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/lm_eval.smk"
include: "workflow/rules/report.smk"


# The runs too, not only the reports: committed reports must not hide a grid that was never computed.
rule all:
    input:
        RUN_FILES,
        REPORT_FILES,
    default_target: True


onsuccess:
    print(f"\nmmcl: report written to {REPORT_DIR}/index.md (tables under {REPORT_DIR}/<suite>/<order>/<backbone>/)")
