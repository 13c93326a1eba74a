# A suite's image artifacts, planned only where something reads them (common.smk: base_inputs for a
# backbone assembled from an image tokenizer, judge_input for a suite with generation tasks), and the
# gradient-conflict diagnostic of unified models.


rule train_tokenizer:
    input:
        "data/{suite}/manifest.json",
    output:
        directory(image_tokenizer_dir("{suite}", "{backbone}")),
    log:
        "logs/{suite}/{backbone}/image_tokenizer.log",
    benchmark:
        "logs/benchmarks/train_tokenizer/{suite}/{backbone}.tsv",
    params:
        params_file=PARAMS_FILE,
        config=fingerprint("suites.{suite}", "backbones.{backbone}.tokenizer"),
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
        "data/{suite}/manifest.json",
    output:
        directory(judge_dir("{suite}")),
    log:
        "logs/{suite}/judge.log",
    benchmark:
        "logs/benchmarks/train_judge/{suite}.tsv",
    params:
        params_file=PARAMS_FILE,
        config=fingerprint("suites.{suite}", "judge"),
    threads: cpus("train_base")
    resources:
        **cluster_resources("train_base"),
    conda:
        "../envs/mmcl.yaml"
    shell:
        "OMP_NUM_THREADS={threads} mmcl train-judge --params {params.params_file} --suite {wildcards.suite} "
        "--data data/{wildcards.suite} --out {output} > {log} 2>&1"


# MoDE's Figure 5 for one checkpoint: per trained tensor, the cosine between its text- and image-loss
# gradients (read by the report, common.smk: GRADIENT_FILES).
rule gradients:
    input:
        data="data/{suite}/manifest.json",
        base=start_model,
        checkpoint="results/{suite}/{backbone}/{method}/seed{seed}/stages/{stage}/checkpoint",
    output:
        "results/{suite}/{backbone}/{method}/seed{seed}/gradients/{stage}.json",
    log:
        "logs/{suite}/{backbone}/{method}/seed{seed}/{stage}.gradients.log",
    benchmark:
        "logs/benchmarks/gradients/{suite}/{backbone}/{method}/seed{seed}/{stage}.tsv",
    params:
        params_file=PARAMS_FILE,
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
        "--checkpoint {input.checkpoint} --out {output} > {log} 2>&1"
