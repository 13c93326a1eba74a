rule train_base:
    input:
        unpack(base_inputs),
    output:
        directory(paths.base_checkpoint()),
    log:
        paths.log("{suite}/{backbone}/base"),
    benchmark:
        paths.benchmark("train_base", "{suite}/{backbone}/base"),
    params:
        params_file=PARAMS_FILE,
        config=suite_fingerprint("backbones.{backbone}", "train.precision"),
    threads: cpus("train_base")
    resources:
        **cluster_resources("train_base"),
    conda:
        "../envs/mmcl.yaml"
    # exec: a shell in between would die of Slurm's early SIGTERM and end the job while the trainer saves
    shell:
        "OMP_NUM_THREADS={threads} exec mmcl train-base --params {params.params_file} --suite {wildcards.suite} "
        "--backbone {wildcards.backbone} --data data/{wildcards.suite} --out {output} > {log} 2>&1"


# The LLaVA-1.5 alignment stage of suites that have one: the projector learns captions from the base
# model, once per suite and backbone; every run's first stage starts from it (`start_model`).
rule align:
    input:
        unpack(feature_inputs),
        data=paths.suite_manifest(),
        base=paths.base_checkpoint(),
    output:
        directory(paths.aligned_checkpoint()),
    log:
        paths.log("{suite}/{backbone}/aligned"),
    benchmark:
        paths.benchmark("align", "{suite}/{backbone}/aligned"),
    params:
        params_file=PARAMS_FILE,
        features=features_flag,
        config=fingerprint("suites.{suite}.alignment", "train.precision"),
    threads: cpus("train_base")
    resources:
        **cluster_resources("train_base"),
    conda:
        "../envs/mmcl.yaml"
    # exec: as in train_base
    shell:
        "OMP_NUM_THREADS={threads} exec mmcl align --params {params.params_file} --suite {wildcards.suite} "
        "--backbone {wildcards.backbone} --data data/{wildcards.suite} --base {input.base} {params.features} --out {output} > {log} 2>&1"


rule train_stage:
    input:
        unpack(feature_inputs),
        unpack(stage_inputs),
    output:
        directory(paths.stage_checkpoint()),
    log:
        paths.log(paths.stage_stem(), "train"),
    benchmark:
        paths.benchmark("train_stage", paths.stage_stem()),
    params:
        params_file=PARAMS_FILE,
        features=features_flag,
        prev=previous_flag,
        artifacts=artifact_flags,
        config=stage_fingerprint,
    threads: cpus("train_stage")
    # The launcher is a resource, not a param: params are rerun triggers, and a new GPU count must not
    # re-run finished stages.
    resources:
        **cluster_resources("train_stage"),
        launcher=stage_launcher(),
    conda:
        "../envs/mmcl.yaml"
    # exec: as in train_base
    shell:
        "OMP_NUM_THREADS={threads} exec {resources.launcher} train-stage --params {params.params_file} "
        "--suite {wildcards.suite} --backbone {wildcards.backbone} --method {wildcards.method} --seed {wildcards.seed} "
        "--stage {wildcards.stage} --data data/{wildcards.suite} --base {input.base} {params.prev} {params.artifacts} "
        "{params.features} --out {output} > {log} 2>&1"
