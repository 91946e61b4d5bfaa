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
    priority: 4
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


# One sweep rule per group of agents meta-trained over the same seeds (a rule's outputs, one file
# per seed, cannot vary with the agent): `sweep_agent` for the agents on meta_train.seeds, and
# `sweep_agent_seeds_<s>_<t>` for agents that set their own meta_train.seeds.
for _seeds, _agents in registry.seed_groups(config).items():

    rule:
        """An agent's policies (one per meta-training seed), unchanged, on one task over the lr0
        grid x evaluation seeds: one process and one compilation for them all."""
        name:
            (
                "sweep_agent"
                if list(_seeds) == SEEDS
                else "sweep_agent_seeds_" + "_".join(map(str, _seeds))
            )
        input:
            task_data,
            policies=per_seed(layout.POLICY_JSON, _seeds),
        output:
            results=per_seed(layout.AGENT_CSV, _seeds),
            schedules=per_seed(layout.AGENT_SCHEDULES_CSV, _seeds),
        log:
            "logs/sweep/{task}/{agent}.log",
        benchmark:
            "results/benchmarks/sweep/{task}_{agent}.tsv"
        wildcard_constraints:
            agent="|".join(_agents),
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
