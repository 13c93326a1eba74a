# A stage's rehearsal buffer (methods with replay_fraction > 0, from the second stage on): sample ids
# only, no model, so it is cheap and never waits for a checkpoint.
rule replay:
    input:
        paths.suite_manifest(),
    output:
        directory(paths.stage_artifact("replay")),
    log:
        paths.log(paths.stage_stem(), "replay"),
    benchmark:
        paths.benchmark("replay", paths.stage_stem()),
    params:
        params_file=PARAMS_FILE,
        config=replay_fingerprint,
    resources:
        **cluster_resources("default"),
    conda:
        "../envs/mmcl.yaml"
    shell:
        "mmcl replay --params {params.params_file} --method {wildcards.method} --seed {wildcards.seed} "
        "--stage {wildcards.stage} --data data/{wildcards.suite} --out {output} > {log} 2>&1"
