# lm-evaluation-harness on the LLM of every checkpoint, for backbones with `lm_eval` settings (real LLMs):
# the linguistic measures that aggregate_run reads beside each evaluation (`lm_eval/` next to `eval/`).
# The harness downloads its tasks' datasets on first use (Hugging Face datasets cache); offline nodes
# need that cache filled, or tasks defined on local files under `lm_eval.include_path`.
rule lm_eval_stage:
    input:
        base="results/{suite}/{backbone}/base/checkpoint",
        checkpoint="results/{suite}/{backbone}/{method}/seed{seed}/stages/{stage}/checkpoint",
    output:
        "results/{suite}/{backbone}/{method}/seed{seed}/stages/{stage}/lm_eval/scores.json",
    log:
        "logs/{suite}/{backbone}/{method}/seed{seed}/{stage}.lm_eval.log",
    benchmark:
        "logs/benchmarks/lm_eval_stage/{suite}/{backbone}/{method}/seed{seed}/{stage}.tsv",
    params:
        params_file=PARAMS_FILE,
        config=fingerprint("backbones.{backbone}.lm_eval"),
    threads: cpus("evaluate")
    resources:
        **cluster_resources("evaluate"),
    conda:
        "../envs/mmcl.yaml"
    shell:
        "OMP_NUM_THREADS={threads} mmcl lm-eval --params {params.params_file} --backbone {wildcards.backbone} "
        "--base {input.base} --method {wildcards.method} --checkpoint {input.checkpoint} "
        "--out $(dirname {output}) > {log} 2>&1"


rule lm_eval_base:
    input:
        base="results/{suite}/{backbone}/base/checkpoint",
    output:
        "results/{suite}/{backbone}/base/lm_eval/scores.json",
    log:
        "logs/{suite}/{backbone}/base.lm_eval.log",
    benchmark:
        "logs/benchmarks/lm_eval_base/{suite}/{backbone}/base.tsv",
    params:
        params_file=PARAMS_FILE,
        config=fingerprint("backbones.{backbone}.lm_eval"),
    threads: cpus("evaluate")
    resources:
        **cluster_resources("evaluate"),
    conda:
        "../envs/mmcl.yaml"
    shell:
        "OMP_NUM_THREADS={threads} mmcl lm-eval --params {params.params_file} --backbone {wildcards.backbone} "
        "--base {input.base} --out $(dirname {output}) > {log} 2>&1"
