rule aggregate_run:
    input:
        stage_scores=run_stage_scores,
        zeroshot="results/{suite}/{backbone}/base/eval/scores.json",
    output:
        "results/{suite}/{backbone}/{method}/seed{seed}/runs/{order}.json",
    log:
        "logs/{suite}/{backbone}/{method}/seed{seed}/{order}.aggregate.log",
    benchmark:
        "logs/benchmarks/aggregate_run/{suite}/{backbone}/{method}/seed{seed}/{order}.tsv",
    params:
        params_file=PARAMS_FILE,
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
    output:
        REPORT_FILES,
    log:
        "logs/report.log",
    benchmark:
        "logs/benchmarks/report.tsv",
    params:
        params_file=PARAMS_FILE,
        suite=SUITE,
    conda:
        "../envs/mmcl.yaml"
    shell:
        "mmcl report --params {params.params_file} --runs {input.runs} "
        "--reference {params.suite}={input.reference} --out reports > {log} 2>&1"
