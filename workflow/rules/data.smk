rule prepare_data:
    """Datasets with fixed splits and a checksum manifest (MNIST-1D, digits: offline)."""
    output:
        npz=f"{config['data']['root']}/processed/{{dataset}}-val{float(config['data']['val_fraction'])!r}-seed{config['data']['split_seed']}.npz",
    log:
        "logs/data/{dataset}.log",
    conda:
        "../envs/ganno.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    params:
        config=RESOLVED_CONFIG,
    shell:
        "ganno data prepare {wildcards.dataset} --config {params.config} > {log} 2>&1"
