# The robustness sweep (C2: task "train") and the generalisation evaluation (C3: the configured
# tasks) are one experiment on different tasks: every method from every initial rate and seed.


rule sweep_baselines:
    """Every configured baseline on one task over the lr0 grid x evaluation seeds."""
    input:
        task_data,
    output:
        "results/sweep/{task}/baselines.csv",
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


rule sweep_policies:
    """Every meta-trained policy (algorithm x seed), unchanged, on one task over the lr0 grid x
    evaluation seeds: one process and one compilation for them all."""
    input:
        task_data,
        policies=expand(
            "results/meta_train/{algo}/seed_{seed}/policy/policy.json",
            algo=ALGOS,
            seed=SEEDS,
        ),
    output:
        results=expand(
            "results/sweep/{{task}}/{algo}_seed_{seed}.csv", algo=ALGOS, seed=SEEDS
        ),
        schedules=expand(
            "results/sweep/{{task}}/{algo}_seed_{seed}.schedules.csv",
            algo=ALGOS,
            seed=SEEDS,
        ),
    log:
        "logs/sweep/{task}/policies.log",
    benchmark:
        "results/benchmarks/sweep/{task}_policies.tsv"
    conda:
        "../envs/ganno.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=240,
    params:
        config=RESOLVED_CONFIG,
        settings=lambda w: task_settings(w, "task", "env", "evaluation"),
        runs=lambda w, input, output: sweep_arguments(
            [(f"ganno_{algo}", seed) for algo in ALGOS for seed in SEEDS],
            input,
            output,
        ),
    shell:
        "ganno generalise --config {params.config} --task {wildcards.task} {params.runs} "
        "> {log} 2>&1"


rule sweep_variant:
    """A Q1/Q2 variant's policies (one per seed) on one task over the lr0 grid x evaluation
    seeds, in one process."""
    input:
        task_data,
        policies=expand(
            "results/meta_train/variants/{{variant}}/seed_{seed}/policy/policy.json",
            seed=SEEDS,
        ),
    output:
        results=expand(
            "results/sweep/{{task}}/variants/{{variant}}_seed_{seed}.csv", seed=SEEDS
        ),
        schedules=expand(
            "results/sweep/{{task}}/variants/{{variant}}_seed_{seed}.schedules.csv",
            seed=SEEDS,
        ),
    log:
        "logs/sweep/{task}/variants/{variant}.log",
    benchmark:
        "results/benchmarks/sweep/{task}_variant_{variant}.tsv"
    conda:
        "../envs/ganno.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=120,
    params:
        config=RESOLVED_CONFIG,
        settings=lambda w: task_settings(w, "task", "env", "evaluation"),
        runs=lambda w, input, output: sweep_arguments(
            [(f"ganno_{w.variant}", seed) for seed in SEEDS], input, output
        ),
    shell:
        "ganno generalise --config {params.config} --task {wildcards.task} "
        "--variant {wildcards.variant} {params.runs} > {log} 2>&1"
