# Figures, tables, executed notebooks and the summary, all from the pipeline's own results; the
# names come from ganno.layout (no JAX), the numbers from `ganno report`.
NOTEBOOKS = sorted(Path("notebooks").glob("*.ipynb"))
REPORT_INPUTS = layout.report_inputs(config, RESULTS)


rule report:
    """The report folder (config report.dir, default paper/): figures (PNG, PDF and the CSV
    drawn), tables (CSV, Markdown, LaTeX), README.md."""
    input:
        REPORT_INPUTS,
    output:
        figures=[
            report(
                f"{REPORT_DIR}/figures/{name}.png",
                caption=f"../report/{layout.caption_name(name)}.rst",
                category="Figures",
            )
            for name in layout.figure_names(config)
        ],
        figure_data=expand(
            "{dir}/figures/{name}.{ext}",
            dir=REPORT_DIR,
            name=layout.figure_names(config),
            ext=["pdf", "csv"],
        ),
        tables=expand(
            "{dir}/tables/{name}.{ext}",
            dir=REPORT_DIR,
            name=layout.table_names(config),
            ext=layout.TABLE_FORMATS,
        ),
        readme=f"{REPORT_DIR}/{layout.README}",
    log:
        "logs/report.log",
    conda:
        "../envs/ganno.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        config=RESOLVED_CONFIG,
        results=lambda wildcards: str(RESULTS),
        out=lambda wildcards, output: str(Path(output.readme).parent),
    shell:
        "ganno report --config {params.config} --results {params.results} "
        "--out {params.out} > {log} 2>&1"


rule notebook:
    """An analysis notebook executed on the results, outputs kept; a failing cell fails. Run
    from notebooks/, as a user opens it in Jupyter (ganno.config.load_project_config finds the
    run's config and results from there)."""
    input:
        notebook="notebooks/{name}.ipynb",
        results=REPORT_INPUTS,
        pretrained=notebook_pretrained,
    output:
        "results/notebooks/{name}.ipynb",
    log:
        "logs/notebooks/{name}.log",
    conda:
        "../envs/ganno.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    shell:
        "ganno notebook {input.notebook} --out {output} --cwd notebooks > {log} 2>&1"


if PRETRAINED_VALIDATION:

    rule select_pretrained_seed:
        """The seed of the shipped agent whose policy the package ships: the highest tuned
        validation-split accuracy pooled over the validation tasks, from every seed's runs there
        (`ganno pretrained select`; its record, every seed's score, goes into PROVENANCE.json).
        """
        input:
            [
                results(layout.AGENT_CSV, task=task, agent=PRETRAINED_AGENT, seed=seed)
                for task in PRETRAINED_VALIDATION
                for seed in PRETRAINED_SEEDS
            ],
        output:
            results(layout.SELECTION_JSON, agent=PRETRAINED_AGENT),
        log:
            "logs/select_pretrained_seed.log",
        conda:
            "../envs/ganno.yaml"
        threads: 1
        resources:
            mem_mb=2000,
            runtime=10,
        params:
            config=RESOLVED_CONFIG,
            agent=PRETRAINED_AGENT,
            results=lambda wildcards: str(RESULTS),
        shell:
            "ganno pretrained select --config {params.config} --agent {params.agent} "
            "--results {params.results} --out {output} > {log} 2>&1"


rule pretrained_policy:
    """The policy shipped in the package (ganno.pretrained_policy()), refreshed from this run:
    the main IPPO agent's policy of the seed selected on the validation tasks (the first
    meta-training seed without them), with its provenance and the report's robustness table as
    its headline numbers (`ganno pretrained refresh`)."""
    input:
        unpack(
            lambda wildcards: (
                {"selection": results(layout.SELECTION_JSON, agent=PRETRAINED_AGENT)}
                if PRETRAINED_VALIDATION
                else {}
            )
        ),
        policies=[
            results(layout.POLICY_JSON, agent=PRETRAINED_AGENT, seed=seed)
            for seed in PRETRAINED_INPUT_SEEDS
        ],
        curves=[
            results(layout.LEARNING_CURVE, agent=PRETRAINED_AGENT, seed=seed)
            for seed in PRETRAINED_INPUT_SEEDS
        ],
        summary=f"{REPORT_DIR}/tables/{layout.PRETRAINED_HEADLINE_TABLE}.csv",
    output:
        PRETRAINED_FILES,
    log:
        "logs/pretrained_policy.log",
    conda:
        "../envs/ganno.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        source=pretrained_source,
        dest=lambda wildcards, output: str(Path(output[0]).parent.parent),
        name=PRETRAINED_AGENT,
        # deploys as the report evaluated it (env.guard)
        guard="--guard" if config["env"].get("guard") else "--no-guard",
        note=(
            f"the pipeline's main IPPO policy (agent {PRETRAINED_AGENT}, "
            + (
                "the meta-training seed selected on the validation tasks: see selection"
                if PRETRAINED_VALIDATION
                else f"meta-training seed {PRETRAINED_SEEDS[0]}"
            )
            + "), refreshed by the workflow rule pretrained_policy; "
            f"headline: the report's {layout.PRETRAINED_HEADLINE_TABLE} table (every method on "
            "the training task)"
        ),
    shell:
        "ganno pretrained refresh {params.source} --summary {input.summary} "
        "--name {params.name} --dest {params.dest} --note {params.note:q} {params.guard} "
        "> {log} 2>&1"
