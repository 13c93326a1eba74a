# lm-evaluation-harness on the LLM of every checkpoint, for backbones with `lm_eval` settings (real LLMs):
# the linguistic measures that aggregate_run reads beside each evaluation (`lm_eval/` next to `eval/`).
# The harness downloads its tasks' datasets on first use (Hugging Face datasets cache); offline nodes
# need that cache filled, or tasks defined on local files under `lm_eval.include_path`.
rule lm_eval_stage:
    input:
        base=paths.base_checkpoint(),
        checkpoint=paths.stage_checkpoint(),
    output:
        paths.stage_lm_eval(),
    log:
        paths.log(paths.stage_stem(), "lm_eval"),
    benchmark:
        paths.benchmark("lm_eval_stage", paths.stage_stem()),
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
        base=paths.base_checkpoint(),
    output:
        paths.base_lm_eval(),
    log:
        paths.log("{suite}/{backbone}/base", "lm_eval"),
    benchmark:
        paths.benchmark("lm_eval_base", "{suite}/{backbone}/base"),
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
