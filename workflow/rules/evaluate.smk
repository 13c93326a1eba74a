rule evaluate_stage:
    input:
        unpack(judge_input),
        data="data/{suite}/manifest.json",
        base=start_model,
        checkpoint="results/{suite}/{backbone}/{method}/seed{seed}/stages/{stage}/checkpoint",
    output:
        "results/{suite}/{backbone}/{method}/seed{seed}/stages/{stage}/eval/scores.json",
    log:
        "logs/{suite}/{backbone}/{method}/seed{seed}/{stage}.eval.log",
    benchmark:
        "logs/benchmarks/evaluate_stage/{suite}/{backbone}/{method}/seed{seed}/{stage}.tsv",
    params:
        params_file=PARAMS_FILE,
        config=fingerprint("evaluation"),
    threads: cpus("evaluate")
    resources:
        **cluster_resources("evaluate"),
    conda:
        "../envs/mmcl.yaml"
    shell:
        "OMP_NUM_THREADS={threads} mmcl evaluate --params {params.params_file} --suite {wildcards.suite} "
        "--data data/{wildcards.suite} --base {input.base} --method {wildcards.method} "
        "--checkpoint {input.checkpoint} --out $(dirname {output}) > {log} 2>&1"


rule evaluate_base:
    input:
        unpack(judge_input),
        data="data/{suite}/manifest.json",
        base="results/{suite}/{backbone}/base/checkpoint",
    output:
        "results/{suite}/{backbone}/base/eval/scores.json",
    log:
        "logs/{suite}/{backbone}/base.eval.log",
    benchmark:
        "logs/benchmarks/evaluate_base/{suite}/{backbone}/base.tsv",
    params:
        params_file=PARAMS_FILE,
        config=fingerprint("evaluation"),
    threads: cpus("evaluate")
    resources:
        **cluster_resources("evaluate"),
    conda:
        "../envs/mmcl.yaml"
    shell:
        "OMP_NUM_THREADS={threads} mmcl evaluate --params {params.params_file} --suite {wildcards.suite} "
        "--data data/{wildcards.suite} --base {input.base} --out $(dirname {output}) > {log} 2>&1"


rule evaluate_reference:
    input:
        "data/{suite}/manifest.json",
    output:
        "results/{suite}/reference/scores.json",
    log:
        "logs/{suite}/reference.eval.log",
    benchmark:
        "logs/benchmarks/evaluate_reference/{suite}/reference.tsv",
    params:
        params_file=PARAMS_FILE,
        config=fingerprint("evaluation"),
    resources:
        **cluster_resources("default"),
    conda:
        "../envs/mmcl.yaml"
    shell:
        "mmcl evaluate --params {params.params_file} --suite {wildcards.suite} --data data/{wildcards.suite} "
        "--reference --out $(dirname {output}) > {log} 2>&1"
