rule train_base:
    input:
        "data/{suite}/manifest.json",
    output:
        directory("results/{suite}/{backbone}/base/checkpoint"),
    log:
        "logs/{suite}/{backbone}/base.log",
    benchmark:
        "logs/benchmarks/train_base/{suite}/{backbone}/base.tsv",
    params:
        params_file=PARAMS_FILE,
        config=fingerprint("suites.{suite}", "backbones.{backbone}", "train.precision"),
    threads: 2
    conda:
        "../envs/mmcl.yaml"
    shell:
        "OMP_NUM_THREADS={threads} mmcl train-base --params {params.params_file} --suite {wildcards.suite} "
        "--backbone {wildcards.backbone} --data data/{wildcards.suite} --out {output} > {log} 2>&1"


rule train_stage:
    input:
        unpack(stage_inputs),
    output:
        directory("results/{suite}/{backbone}/{method}/seed{seed}/stages/{stage}/checkpoint"),
    log:
        "logs/{suite}/{backbone}/{method}/seed{seed}/{stage}.train.log",
    benchmark:
        "logs/benchmarks/train_stage/{suite}/{backbone}/{method}/seed{seed}/{stage}.tsv",
    params:
        params_file=PARAMS_FILE,
        prev=previous_flag,
        config=fingerprint("methods.{method}", "train"),
    threads: 1
    conda:
        "../envs/mmcl.yaml"
    shell:
        "OMP_NUM_THREADS={threads} mmcl train-stage --params {params.params_file} --suite {wildcards.suite} "
        "--backbone {wildcards.backbone} --method {wildcards.method} --seed {wildcards.seed} "
        "--stage {wildcards.stage} --data data/{wildcards.suite} --base {input.base} {params.prev} "
        "--out {output} > {log} 2>&1"
