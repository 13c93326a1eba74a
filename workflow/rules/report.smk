rule aggregate_run:
    input:
        stage_scores=run_stage_scores,
        zeroshot=paths.base_scores(),
        analyses=run_analysis_inputs,  # read beside the scores above (Analysis.aggregate_inputs)
    output:
        paths.run_file(),
    log:
        paths.log(f"{paths.run_stem()}/{{order}}", "aggregate"),
    benchmark:
        paths.benchmark("aggregate_run", f"{paths.run_stem()}/{{order}}"),
    params:
        params_file=PARAMS_FILE,
    resources:
        **cluster_resources("default"),
    conda:
        "../envs/mmcl.yaml"
    shell:
        "mmcl aggregate --params {params.params_file} --suite {wildcards.suite} --order {wildcards.order} "
        "--backbone {wildcards.backbone} --method {wildcards.method} --seed {wildcards.seed} "
        "--stage-scores {input.stage_scores} --zeroshot-scores {input.zeroshot} --out {output} > {log} 2>&1"


rule report:
    input:
        unpack(lambda wildcards: REPORT_INPUTS),  # by analysis: the files each reads (Analysis.report_inputs)
        runs=RUN_FILES,
        reference=paths.reference_scores(SUITE),
    output:
        REPORT_FILES,
    log:
        paths.log(f"{REPORT_DIR}/report"),
    benchmark:
        paths.benchmark("report", REPORT_DIR),
    params:
        params_file=PARAMS_FILE,
        suite=SUITE,
        baseline=GRID.compare_with or "",  # what the tables test against: a change re-runs the report
        preset=f"--preset {PRESET}" if PRESET else "",
        out=lambda wildcards, output: Path(output[0]).parent,
        inputs=lambda wildcards, input: "".join(f" --input {a}={path}" for a in REPORT_INPUTS for path in input[a]),
    resources:
        **cluster_resources("default"),
    conda:
        "../envs/mmcl.yaml"
    shell:
        "mmcl report --params {params.params_file} --runs {input.runs} "
        "--reference {params.suite}={input.reference} --out {params.out} {params.preset}{params.inputs} > {log} 2>&1"
