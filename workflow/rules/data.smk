rule prepare_data:
    """Datasets with fixed splits and a checksum manifest (MNIST-1D, digits: offline)."""
    output:
        npz=f"{config['data']['root']}/processed/{{dataset}}-val{float(config['data']['val_fraction'])!r}-seed{config['data']['split_seed']}.npz",
    log:
        "logs/data/{dataset}.log",
    priority: 20
    conda:
        "../envs/ganno.yaml"
    # Every core, though it needs one: the jobs before meta-training then each hold every core,
    # so when one ends all cores are free together and meta-training (which needs them all)
    # starts before any single-core job can take one of them (see workflow/rules/meta_train.smk).
    threads: workflow.cores
    resources:
        mem_mb=2000,
        runtime=30,
    params:
        config=RESOLVED_CONFIG,
    shell:
        "ganno data prepare {wildcards.dataset} --config {params.config} > {log} 2>&1"
