# The frozen encoders' output for every media file of a suite, once per (suite, backbone); the stage,
# teach, alignment, evaluation and gradient jobs read it instead of decoding media (`feature_inputs`).
rule encode_media:
    input:
        data=paths.suite_manifest(),
        base=paths.base_checkpoint(),
    output:
        directory(paths.feature_cache()),
    log:
        paths.log("{suite}/{backbone}/features"),
    benchmark:
        paths.benchmark("encode_media", "{suite}/{backbone}/features"),
    params:
        params_file=PARAMS_FILE,
    threads: cpus("evaluate")
    resources:
        **cluster_resources("evaluate"),
    conda:
        "../envs/mmcl.yaml"
    shell:
        "OMP_NUM_THREADS={threads} mmcl encode-media --params {params.params_file} --suite {wildcards.suite} "
        "--backbone {wildcards.backbone} --data data/{wildcards.suite} --base {input.base} --out {output} > {log} 2>&1"
