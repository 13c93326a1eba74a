# A suite's image artifacts, planned only where something reads them (common.smk: base_inputs for a
# backbone assembled from an image tokenizer, judge_input for a suite with generation tasks), and the
# gradient-conflict diagnostic of unified models.


rule train_tokenizer:
    input:
        paths.suite_manifest(),
    output:
        directory(paths.image_tokenizer_dir()),
    log:
        paths.log("{suite}/{backbone}/image_tokenizer"),
    benchmark:
        paths.benchmark("train_tokenizer", "{suite}/{backbone}/image_tokenizer"),
    params:
        params_file=PARAMS_FILE,
        config=suite_fingerprint("backbones.{backbone}.tokenizer"),
    threads: cpus("train_base")
    resources:
        **cluster_resources("train_base"),
    conda:
        "../envs/mmcl.yaml"
    shell:
        "OMP_NUM_THREADS={threads} mmcl train-tokenizer --params {params.params_file} --suite {wildcards.suite} "
        "--backbone {wildcards.backbone} --data data/{wildcards.suite} --out {output} > {log} 2>&1"


rule train_judge:
    input:
        paths.suite_manifest(),
    output:
        directory(paths.judge_dir()),
    log:
        paths.log("{suite}/judge"),
    benchmark:
        paths.benchmark("train_judge", "{suite}/judge"),
    params:
        params_file=PARAMS_FILE,
        config=suite_fingerprint("judge"),
    threads: cpus("train_base")
    resources:
        **cluster_resources("train_base"),
    conda:
        "../envs/mmcl.yaml"
    shell:
        "OMP_NUM_THREADS={threads} mmcl train-judge --params {params.params_file} --suite {wildcards.suite} "
        "--data data/{wildcards.suite} --out {output} > {log} 2>&1"


# MoDE's Figure 5 for one checkpoint: per trained tensor, the cosine between its text- and image-loss
# gradients (read by the report: the `gradients` analysis's report inputs, common.smk: REPORT_INPUTS).
rule gradients:
    input:
        unpack(feature_inputs),
        data=paths.suite_manifest(),
        base=start_model,
        checkpoint=paths.stage_checkpoint(),
    output:
        paths.gradients_file(),
    log:
        paths.log(paths.stage_stem(), "gradients"),
    benchmark:
        paths.benchmark("gradients", paths.stage_stem()),
    params:
        params_file=PARAMS_FILE,
        features=features_flag,
        config=fingerprint("suites.{suite}.tasks"),
    threads: cpus("evaluate")
    resources:
        **cluster_resources("evaluate"),
    conda:
        "../envs/mmcl.yaml"
    shell:
        "OMP_NUM_THREADS={threads} mmcl gradients --params {params.params_file} --suite {wildcards.suite} "
        "--backbone {wildcards.backbone} --method {wildcards.method} --seed {wildcards.seed} "
        "--stage {wildcards.stage} --data data/{wildcards.suite} --base {input.base} "
        "--checkpoint {input.checkpoint} {params.features} --out {output} > {log} 2>&1"
