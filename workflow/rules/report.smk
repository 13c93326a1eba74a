rule aggregate_run:
    input:
        stage_scores=run_stage_scores,
        zeroshot="results/{suite}/{backbone}/base/eval/scores.json",
        lm_eval=run_lm_eval_scores,  # read beside the scores above (mmcl.aggregate.lm_eval_scores)
        final_checkpoint=run_final_checkpoint,  # likewise (mmcl.aggregate.checkpoint_meta)
    output:
        "results/{suite}/{backbone}/{method}/seed{seed}/runs/{order}.json",
    log:
        "logs/{suite}/{backbone}/{method}/seed{seed}/{order}.aggregate.log",
    benchmark:
        "logs/benchmarks/aggregate_run/{suite}/{backbone}/{method}/seed{seed}/{order}.tsv",
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
        runs=RUN_FILES,
        reference=f"results/{SUITE}/reference/scores.json",
        gradients=GRADIENT_FILES,
    output:
        REPORT_FILES,
    log:
        f"logs/{REPORT_DIR}/report.log",
    benchmark:
        f"logs/benchmarks/{REPORT_DIR}/report.tsv",
    params:
        params_file=PARAMS_FILE,
        suite=SUITE,
        preset=f"--preset {PRESET}" if PRESET else "",
        out=lambda wildcards, output: Path(output[0]).parent,
        gradients=lambda wildcards, input: f" --gradients {' '.join(input.gradients)}" if input.gradients else "",
    resources:
        **cluster_resources("default"),
    conda:
        "../envs/mmcl.yaml"
    shell:
        "mmcl report --params {params.params_file} --runs {input.runs} "
        "--reference {params.suite}={input.reference} --out {params.out} {params.preset}{params.gradients} > {log} 2>&1"
