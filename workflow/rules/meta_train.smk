# Meta-training goes first (priority): it holds every core and everything downstream waits on it;
# the single-core baseline jobs then fill the cores next to the evaluations at the end.


rule meta_train:
    """IPPO / MAPPO agents meta-trained on the config's task; a killed run resumes."""
    input:
        training_data,
    output:
        policy="results/meta_train/{algo}/seed_{seed}/policy/policy.json",
        curve="results/meta_train/{algo}/seed_{seed}/learning_curve.jsonl",
    log:
        "logs/meta_train/{algo}_seed_{seed}.log",
    benchmark:
        "results/benchmarks/meta_train/{algo}_seed_{seed}.tsv"
    priority: 10
    conda:
        "../envs/ganno.yaml"
    threads: workflow.cores
    resources:
        mem_mb=4000,
        runtime=120,
    params:
        config=RESOLVED_CONFIG,
        settings=section("seed", "task", "env", "meta_train"),
        out=lambda wildcards, output: str(Path(output.curve).parent),
    shell:
        "ganno meta-train --config {params.config} --algo {wildcards.algo} "
        "--seed {wildcards.seed} --out {params.out} --no-progress > {log} 2>&1"


rule meta_train_variant:
    """Q1/Q2 variants of the agents (config extensions.variants), meta-trained like the main ones."""
    input:
        training_data,
    output:
        policy="results/meta_train/variants/{variant}/seed_{seed}/policy/policy.json",
        curve="results/meta_train/variants/{variant}/seed_{seed}/learning_curve.jsonl",
    log:
        "logs/meta_train/variants/{variant}_seed_{seed}.log",
    benchmark:
        "results/benchmarks/meta_train/variants/{variant}_seed_{seed}.tsv"
    priority: 10
    conda:
        "../envs/ganno.yaml"
    threads: workflow.cores
    resources:
        mem_mb=4000,
        runtime=240,
    params:
        config=RESOLVED_CONFIG,
        settings=variant_settings,
        out=lambda wildcards, output: str(Path(output.curve).parent),
    shell:
        "ganno meta-train --config {params.config} --variant {wildcards.variant} "
        "--seed {wildcards.seed} --out {params.out} --no-progress > {log} 2>&1"
