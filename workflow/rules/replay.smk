# A stage's rehearsal buffer (methods with replay_fraction > 0, from the second stage on): sample ids
# only, no model, so it is cheap and never waits for a checkpoint.
rule replay:
    input:
        "data/{suite}/manifest.json",
    output:
        directory("results/{suite}/{backbone}/{method}/seed{seed}/stages/{stage}/replay"),
    log:
        "logs/{suite}/{backbone}/{method}/seed{seed}/{stage}.replay.log",
    benchmark:
        "logs/benchmarks/replay/{suite}/{backbone}/{method}/seed{seed}/{stage}.tsv",
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
