rule prepare:
    input:
        suite_datasets,
    output:
        paths.suite_manifest(),
    log:
        paths.log("{suite}/prepare"),
    benchmark:
        paths.benchmark("prepare", "{suite}/prepare"),
    params:
        params_file=PARAMS_FILE,
        config=suite_fingerprint(),
    resources:
        **cluster_resources("default"),
    conda:
        "../envs/mmcl.yaml"
    shell:
        "mmcl prepare --params {params.params_file} --suite {wildcards.suite} --out data/{wildcards.suite} > {log} 2>&1"
