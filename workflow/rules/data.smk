rule prepare:
    input:
        suite_datasets,
    output:
        "data/{suite}/manifest.json",
    log:
        "logs/{suite}/prepare.log",
    benchmark:
        "logs/benchmarks/prepare/{suite}.tsv",
    params:
        params_file=PARAMS_FILE,
        config=fingerprint("suites.{suite}"),
    resources:
        **cluster_resources("default"),
    conda:
        "../envs/mmcl.yaml"
    shell:
        "mmcl prepare --params {params.params_file} --suite {wildcards.suite} --out data/{wildcards.suite} > {log} 2>&1"
