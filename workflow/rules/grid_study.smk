# The lr0 grid study (ganno.grid_study): some methods and one agent's policies on some tasks over
# a finer lr0 grid (grid_study.lr0_per_decade), tabled beside the default run's own sweeps of
# them. Not part of `all` (it costs about as much again as the default run):
#   snakemake --cores all grid_study
from ganno import grid_study as grid

# A config without a grid_study block takes its defaults; where they do not fit the config (a
# task or baseline it lacks), only asking for the target is an error.
try:
    GRID = grid.settings(config)
except ConfigError:
    GRID = None

GRID_CONFIG = str(RESULTS / grid.CONFIG)
GRID_TABLES = expand(
    "{dir}/tables/{name}.{ext}",
    dir=REPORT_DIR,
    name=grid.NAME,
    ext=layout.TABLE_FORMATS,
)

if GRID is not None:
    GRID_AGENT = GRID["agent"]
    GRID_SEEDS = agent_seeds(GRID_AGENT)
    _write_if_changed(
        GRID_CONFIG, yaml.safe_dump(grid.fine_config(config, GRID), sort_keys=False)
    )

    rule grid_study_baselines:
        """The grid study's baselines on one of its tasks over the fine lr0 grid x evaluation
        seeds."""
        input:
            task_data,
        output:
            results(grid.BASELINES_CSV),
        log:
            "logs/grid_study/{task}/baselines.log",
        benchmark:
            "results/benchmarks/grid_study/{task}_baselines.tsv"
        wildcard_constraints:
            task="|".join(GRID["tasks"]),
        conda:
            "../envs/ganno.yaml"
        threads: 1
        resources:
            mem_mb=4000,
            runtime=240,
        params:
            config=GRID_CONFIG,
            methods=",".join(GRID["methods"]),
            settings=lambda w: grid.sweep_settings(config, GRID, w.task),
        shell:
            "ganno baselines --config {params.config} --task {wildcards.task} "
            "--methods {params.methods} --out {output} > {log} 2>&1"

    rule grid_study_agent:
        """The grid study's agent's policies (one per meta-training seed), unchanged, on one of
        its tasks over the fine lr0 grid x evaluation seeds: one process for them all.
        """
        input:
            task_data,
            policies=[
                results(layout.POLICY_JSON, agent=GRID_AGENT, seed=s)
                for s in GRID_SEEDS
            ],
        output:
            results=[
                results(grid.AGENT_CSV, agent=GRID_AGENT, seed=s) for s in GRID_SEEDS
            ],
        log:
            f"logs/grid_study/{{task}}/{GRID_AGENT}.log",
        benchmark:
            f"results/benchmarks/grid_study/{{task}}_{GRID_AGENT}.tsv"
        wildcard_constraints:
            task="|".join(GRID["tasks"]),
        conda:
            "../envs/ganno.yaml"
        threads: 1
        resources:
            mem_mb=4000,
            runtime=240,
        params:
            config=GRID_CONFIG,
            agent=GRID_AGENT,
            settings=lambda w: grid.sweep_settings(config, GRID, w.task, GRID_AGENT),
            runs=lambda w, input, output: grid.generalise_arguments(
                GRID_SEEDS, input.policies, output.results
            ),
        shell:
            "ganno generalise --config {params.config} --task {wildcards.task} "
            "--agent {params.agent} {params.runs} > {log} 2>&1"


rule grid_study:
    """The lr0 grid study's table (<report.dir>/tables/grid_study.{csv,md,tex}): every study
    method's tuned test accuracy on the evaluation grid and on the fine grid, and the agent's
    standing against the best handcrafted SGD schedule on each (`ganno grid-study`)."""
    input:
        # the study's settings are checked here, so a config whose defaults do not fit (a task
        # or baseline it lacks) fails only when the target is asked for
        unpack(lambda w: grid.table_inputs(config, RESULTS)),
    output:
        GRID_TABLES,
    log:
        "logs/grid_study/table.log",
    conda:
        "../envs/ganno.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        config=RESOLVED_CONFIG,
        coarse=str(RESULTS / grid.SWEEP),
        fine=str(RESULTS / grid.NAME / grid.SWEEP),
        out=lambda w, output: str(Path(output[0]).with_suffix("")),
    shell:
        "ganno grid-study --config {params.config} --coarse {params.coarse} "
        "--fine {params.fine} --out {params.out} > {log} 2>&1"
