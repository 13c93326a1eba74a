rule teach:
    input:
        unpack(feature_inputs),
        unpack(model_inputs),
    output:
        directory(paths.stage_artifact("teacher")),
    log:
        paths.log(paths.stage_stem(), "teach"),
    benchmark:
        paths.benchmark("teach", paths.stage_stem()),
    params:
        params_file=PARAMS_FILE,
        features=features_flag,
        config=teacher_fingerprint,
    threads: cpus("evaluate")
    resources:
        **cluster_resources("evaluate"),
    conda:
        "../envs/mmcl.yaml"
    shell:
        "OMP_NUM_THREADS={threads} mmcl teach --params {params.params_file} --suite {wildcards.suite} "
        "--backbone {wildcards.backbone} --method {wildcards.method} --seed {wildcards.seed} "
        "--stage {wildcards.stage} --data data/{wildcards.suite} --base {input.base} --prev {input.prev} "
        "{params.features} --out {output} > {log} 2>&1"
