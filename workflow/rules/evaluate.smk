# The robustness sweep (C2: task "train") and the generalisation evaluation (C3: the configured
# tasks) are one experiment on different tasks: every method from every initial rate and seed.


rule sweep_baselines:
    """Every configured baseline on one task over the lr0 grid x evaluation seeds."""
    input:
        task_data,
    output:
        results(layout.BASELINES_CSV),
    log:
        "logs/sweep/{task}/baselines.log",
    benchmark:
        "results/benchmarks/sweep/{task}_baselines.tsv"
    conda:
        "../envs/ganno.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=240,
    params:
        config=RESOLVED_CONFIG,
        settings=lambda w: task_settings(w, "task", "env", "evaluation", "baselines"),
    shell:
        "ganno baselines --config {params.config} --task {wildcards.task} "
        "--out {output} > {log} 2>&1"


rule sweep_agent:
    """An agent's policies (one per meta-training seed), unchanged, on one task over the lr0
    grid x evaluation seeds: one process and one compilation for them all."""
    input:
        task_data,
        policies=per_seed(layout.POLICY_JSON),
    output:
        results=per_seed(layout.AGENT_CSV),
        schedules=per_seed(layout.AGENT_SCHEDULES_CSV),
    log:
        "logs/sweep/{task}/{agent}.log",
    benchmark:
        "results/benchmarks/sweep/{task}_{agent}.tsv"
    conda:
        "../envs/ganno.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=240,
    params:
        config=RESOLVED_CONFIG,
        settings=lambda w: task_settings(w, "task", "env", "evaluation"),
        runs=sweep_arguments,
    shell:
        "ganno generalise --config {params.config} --task {wildcards.task} "
        "--agent {wildcards.agent} {params.runs} > {log} 2>&1"
