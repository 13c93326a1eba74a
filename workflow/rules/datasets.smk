# Real datasets (params.yaml `datasets:`): download each file, unpack the archives, convert the dataset
# into the common format under data/<dataset>/, which the tasks of a `generator: datasets` suite read.


# Compute nodes of many clusters have no internet: downloads run where snakemake runs.
localrules:
    download,


rule download:
    output:
        paths.download(),
    log:
        paths.log("datasets/{dataset}/{file}", "download"),
    params:
        params_file=PARAMS_FILE,
        source=source_fingerprint,
    resources:
        **cluster_resources("default"),
    conda:
        "../envs/mmcl.yaml"
    shell:
        "mmcl download --params {params.params_file} --dataset {wildcards.dataset} --file {wildcards.file} "
        "--out {output} > {log} 2>&1"


rule extract:
    input:
        paths.download(),
    output:
        directory(paths.extracted()),
    log:
        paths.log("datasets/{dataset}/{file}", "extract"),
    params:
        params_file=PARAMS_FILE,
    resources:
        **cluster_resources("default"),
    conda:
        "../envs/mmcl.yaml"
    shell:
        "mmcl extract --params {params.params_file} --dataset {wildcards.dataset} --file {wildcards.file} "
        "--archive {input} --out {output} > {log} 2>&1"


rule convert:
    input:
        dataset_sources,
    output:
        paths.dataset_summary(),
    log:
        paths.log("datasets/{dataset}/convert"),
    benchmark:
        paths.benchmark("convert", "datasets/{dataset}"),
    params:
        params_file=PARAMS_FILE,
        sources=dataset_downloads,
        config=fingerprint("datasets.{dataset}"),
    resources:
        **cluster_resources("default"),
    conda:
        "../envs/mmcl.yaml"
    shell:
        "mmcl convert --params {params.params_file} --dataset {wildcards.dataset} "
        "--sources {params.sources} --out data/{wildcards.dataset} > {log} 2>&1"
