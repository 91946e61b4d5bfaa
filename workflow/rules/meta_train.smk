# Meta-training goes first: it holds every core and everything downstream waits on it; the
# single-core jobs fill the cores, the longest kinds first (the PyTorch deployment, then the
# baseline sweeps, then the agents' sweeps), so that no long job runs alone at the end. Priorities
# only order the jobs that are ready when cores are free: a meta-training job waits for every core, so
# a single core freed while it waits would go to a baseline (Snakemake fills free cores greedily)
# and the next, and the next. Hence the jobs that run before it (prepare_data) hold every core
# too, and every core is free at once when meta-training becomes ready.


rule meta_train:
    """An agent of the registry (config `agents`) meta-trained on the config's task over one
    seed; a killed run resumes."""
    input:
        training_data,
    output:
        policy=results(layout.POLICY_JSON),
        curve=results(layout.LEARNING_CURVE),
    log:
        "logs/meta_train/{agent}_seed_{seed}.log",
    benchmark:
        "results/benchmarks/meta_train/{agent}_seed_{seed}.tsv"
    priority: 10
    conda:
        "../envs/ganno.yaml"
    threads: config["compute"]["meta_train_threads"] or workflow.cores
    resources:
        mem_mb=4000,
        runtime=240,
    params:
        config=RESOLVED_CONFIG,
        settings=agent_settings,
        out=lambda wildcards, output: str(Path(output.curve).parent),
    shell:
        "GANNO_HOST_DEVICES={threads} ganno meta-train --config {params.config} "
        "--agent {wildcards.agent} "
        "--seed {wildcards.seed} --out {params.out} --no-progress > {log} 2>&1"
