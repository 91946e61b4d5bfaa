# Deployment in PyTorch: the meta-trained policies drive the per-layer learning rates of plain
# PyTorch training (ganno.torch.GannoScheduler), compared with PyTorch SGD baselines.


rule torch_deployment:
    """Every network x lr0 x seed of the torch_deployment block: GannoScheduler vs baselines."""
    input:
        training_data,
        policies=[
            results(
                layout.POLICY_JSON, agent=config["torch_deployment"]["agent"], seed=s
            )
            for s in agent_seeds(config["torch_deployment"]["agent"])
            if "ganno" in config["torch_deployment"]["methods"]
        ],
    output:
        results(layout.TORCH_CSV),
    log:
        "logs/torch/deployment.log",
    benchmark:
        "results/benchmarks/torch/deployment.tsv"
    priority: 5
    conda:
        "../envs/ganno.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        config=RESOLVED_CONFIG,
        settings=section("data", "task", "env", "torch_deployment"),
        policies=lambda w, input: " ".join(
            f"--policy {Path(p).parent}" for p in input.policies
        ),
    shell:
        "ganno torch-eval --config {params.config} {params.policies} "
        "--out {output} --threads {threads} --quiet > {log} 2>&1"
