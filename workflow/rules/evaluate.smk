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
    params:
        config=RESOLVED_CONFIG,
        settings=lambda w: task_settings(w, "task", "env", "evaluation", "baselines"),
    shell:
        "ganno baselines --config {params.config} --task {wildcards.task} "
        "--out {output} > {log} 2>&1"


rule sweep_policy:
    """A meta-trained policy, unchanged, on one task over the lr0 grid x evaluation seeds."""
    input:
        task_data,
        policy="results/meta_train/{algo}/seed_{seed}/policy/policy.json",
    output:
        results="results/sweep/{task}/{algo}_seed_{seed}.csv",
        schedules="results/sweep/{task}/{algo}_seed_{seed}.schedules.csv",
    log:
        "logs/sweep/{task}/{algo}_seed_{seed}.log",
    benchmark:
        "results/benchmarks/sweep/{task}_{algo}_seed_{seed}.tsv"
    conda:
        "../envs/ganno.yaml"
    threads: 1
    params:
        config=RESOLVED_CONFIG,
        settings=lambda w: task_settings(w, "task", "env", "evaluation"),
        policy=lambda w, input: str(Path(input.policy).parent),
    shell:
        "ganno generalise --config {params.config} --task {wildcards.task} "
        "--policy {params.policy} --name ganno_{wildcards.algo} --meta-seed {wildcards.seed} "
        "--out {output.results} --schedules {output.schedules} > {log} 2>&1"


rule sweep_variant:
    """A Q1/Q2 variant's policy on one task over the lr0 grid x evaluation seeds."""
    input:
        task_data,
        policy="results/meta_train/variants/{variant}/seed_{seed}/policy/policy.json",
    output:
        results="results/sweep/{task}/variants/{variant}_seed_{seed}.csv",
        schedules="results/sweep/{task}/variants/{variant}_seed_{seed}.schedules.csv",
    log:
        "logs/sweep/{task}/variants/{variant}_seed_{seed}.log",
    benchmark:
        "results/benchmarks/sweep/{task}_variant_{variant}_seed_{seed}.tsv"
    conda:
        "../envs/ganno.yaml"
    threads: 1
    params:
        config=RESOLVED_CONFIG,
        settings=lambda w: task_settings(w, "task", "env", "evaluation"),
        policy=lambda w, input: str(Path(input.policy).parent),
    shell:
        "ganno generalise --config {params.config} --task {wildcards.task} "
        "--variant {wildcards.variant} --policy {params.policy} --name ganno_{wildcards.variant} "
        "--meta-seed {wildcards.seed} --out {output.results} --schedules {output.schedules} "
        "> {log} 2>&1"
