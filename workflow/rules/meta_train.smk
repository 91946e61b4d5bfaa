# Meta-training goes first (priority): it holds every core and everything downstream waits on it;
# the single-core baseline jobs then fill the cores next to the evaluations at the end.


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
    threads: workflow.cores
    params:
        config=RESOLVED_CONFIG,
        settings=agent_settings,
        out=lambda wildcards, output: str(Path(output.curve).parent),
    shell:
        "ganno meta-train --config {params.config} --agent {wildcards.agent} "
        "--seed {wildcards.seed} --out {params.out} --no-progress > {log} 2>&1"
