# Predictions, then scores: `predict_run` loads the start model once and predicts every stage checkpoint
# of one method and seed (on the cells `evaluation.cells` asks for), resuming from each checkpoint's
# response store; `score_stage` scores one checkpoint's stored predictions, without a model. A metric's
# change re-runs only the scoring jobs.
rule predict_run:
    input:
        unpack(feature_inputs),
        unpack(judge_input),
        data=paths.suite_manifest(),
        base=start_model,
        checkpoints=run_checkpoints,
    output:
        paths.run_predictions(grid=GRID_NAME),
    log:
        paths.log(f"{paths.run_stem()}/{GRID_NAME}", "predict"),
    benchmark:
        paths.benchmark("predict_run", f"{paths.run_stem()}/{GRID_NAME}"),
    params:
        params_file=PARAMS_FILE,
        features=features_flag,
        targets=prediction_targets,
        config=fingerprint("evaluation"),
    threads: cpus("evaluate")
    resources:
        **cluster_resources("evaluate"),
    conda:
        "../envs/mmcl.yaml"
    shell:
        "OMP_NUM_THREADS={threads} mmcl predict --params {params.params_file} --suite {wildcards.suite} "
        "--data data/{wildcards.suite} --base {input.base} --method {wildcards.method} {params.features} "
        "--target {params.targets} --out {output} > {log} 2>&1"


rule predict_base:
    input:
        unpack(feature_inputs),
        unpack(judge_input),
        data=paths.suite_manifest(),
        base=paths.base_checkpoint(),
    output:
        paths.base_predictions(),
    log:
        paths.log("{suite}/{backbone}/base", "predict"),
    benchmark:
        paths.benchmark("predict_base", "{suite}/{backbone}/base"),
    params:
        params_file=PARAMS_FILE,
        features=features_flag,
        tasks=lambda wildcards: ",".join(PARAMS.suites[wildcards.suite].evaluated_tasks),
        config=fingerprint("evaluation"),
    threads: cpus("evaluate")
    resources:
        **cluster_resources("evaluate"),
    conda:
        "../envs/mmcl.yaml"
    shell:
        "OMP_NUM_THREADS={threads} mmcl predict --params {params.params_file} --suite {wildcards.suite} "
        "--data data/{wildcards.suite} --base {input.base} {params.features} --target {input.base}={params.tasks} "
        "--out {output} > {log} 2>&1"


rule score_stage:
    input:
        data=paths.suite_manifest(),
        predictions=paths.run_predictions(grid=GRID_NAME),
    output:
        paths.stage_scores(),
    log:
        paths.log(paths.stage_stem(), "score"),
    benchmark:
        paths.benchmark("score_stage", paths.stage_stem()),
    params:
        params_file=PARAMS_FILE,
        tasks=lambda wildcards: " ".join(scored(wildcards.suite, stage_of(wildcards))),
        config=fingerprint("evaluation", "suites.{suite}"),
        code=SCORING_CODE,
    resources:
        **cluster_resources("default"),
    conda:
        "../envs/mmcl.yaml"
    shell:
        "mmcl rescore --params {params.params_file} --suite {wildcards.suite} --data data/{wildcards.suite} "
        "--eval-dir $(dirname {output}) --tasks {params.tasks} > {log} 2>&1"


rule score_base:
    input:
        data=paths.suite_manifest(),
        predictions=paths.base_predictions(),
    output:
        paths.base_scores(),
    log:
        paths.log("{suite}/{backbone}/base", "score"),
    benchmark:
        paths.benchmark("score_base", "{suite}/{backbone}/base"),
    params:
        params_file=PARAMS_FILE,
        tasks=lambda wildcards: " ".join(PARAMS.suites[wildcards.suite].evaluated_tasks),
        config=fingerprint("evaluation", "suites.{suite}"),
        code=SCORING_CODE,
    resources:
        **cluster_resources("default"),
    conda:
        "../envs/mmcl.yaml"
    shell:
        "mmcl rescore --params {params.params_file} --suite {wildcards.suite} --data data/{wildcards.suite} "
        "--eval-dir $(dirname {output}) --tasks {params.tasks} > {log} 2>&1"


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
        config=fingerprint("evaluation", "suites.{suite}"),
        code=SCORING_CODE,
    resources:
        **cluster_resources("default"),
    conda:
        "../envs/mmcl.yaml"
    shell:
        "mmcl evaluate --params {params.params_file} --suite {wildcards.suite} --data data/{wildcards.suite} "
        "--reference --out $(dirname {output}) > {log} 2>&1"
