rule evaluate_stage:
    input:
        unpack(feature_inputs),
        unpack(judge_input),
        data=paths.suite_manifest(),
        base=start_model,
        checkpoint=paths.stage_checkpoint(),
    output:
        paths.stage_scores(),
    log:
        paths.log(paths.stage_stem(), "eval"),
    benchmark:
        paths.benchmark("evaluate_stage", paths.stage_stem()),
    params:
        params_file=PARAMS_FILE,
        features=features_flag,
        config=fingerprint("evaluation"),
    threads: cpus("evaluate")
    resources:
        **cluster_resources("evaluate"),
    conda:
        "../envs/mmcl.yaml"
    shell:
        "OMP_NUM_THREADS={threads} mmcl evaluate --params {params.params_file} --suite {wildcards.suite} "
        "--data data/{wildcards.suite} --base {input.base} --method {wildcards.method} "
        "--checkpoint {input.checkpoint} {params.features} --out $(dirname {output}) > {log} 2>&1"


rule evaluate_base:
    input:
        unpack(feature_inputs),
        unpack(judge_input),
        data=paths.suite_manifest(),
        base=paths.base_checkpoint(),
    output:
        paths.base_scores(),
    log:
        paths.log("{suite}/{backbone}/base", "eval"),
    benchmark:
        paths.benchmark("evaluate_base", "{suite}/{backbone}/base"),
    params:
        params_file=PARAMS_FILE,
        features=features_flag,
        config=fingerprint("evaluation"),
    threads: cpus("evaluate")
    resources:
        **cluster_resources("evaluate"),
    conda:
        "../envs/mmcl.yaml"
    shell:
        "OMP_NUM_THREADS={threads} mmcl evaluate --params {params.params_file} --suite {wildcards.suite} "
        "--data data/{wildcards.suite} --base {input.base} {params.features} --out $(dirname {output}) > {log} 2>&1"


rule evaluate_reference:
    input:
        paths.suite_manifest(),
    output:
        paths.reference_scores(),
    log:
        paths.log("{suite}/reference", "eval"),
    benchmark:
        paths.benchmark("evaluate_reference", "{suite}/reference"),
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
