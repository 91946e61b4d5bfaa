# Figures, tables, executed notebooks and the paper summary, all from the pipeline's own results.
from ganno.report import TABLE_FORMATS, figure_names, report_inputs, table_names

NOTEBOOKS = sorted(Path("notebooks").glob("*.ipynb"))


rule report:
    """paper/: figures (PNG, PDF and the CSV drawn), tables (CSV, Markdown, LaTeX), README.md."""
    input:
        report_inputs(config, "results"),
    output:
        figures=[
            report(
                f"paper/figures/{name}.png",
                caption=f"../report/{name}.rst",
                category="Figures",
            )
            for name in figure_names(config)
        ],
        figure_data=expand(
            "paper/figures/{name}.{ext}", name=figure_names(config), ext=["pdf", "csv"]
        ),
        tables=expand(
            "paper/tables/{name}.{ext}", name=table_names(config), ext=TABLE_FORMATS
        ),
        readme="paper/README.md",
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
    shell:
        "ganno report --config {params.config} --results results --out paper > {log} 2>&1"


rule notebook:
    """An analysis notebook executed on the results, outputs kept; a failing cell fails."""
    input:
        notebook="notebooks/{name}.ipynb",
        results=report_inputs(config, "results"),
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
        "ganno notebook {input.notebook} --out {output} --cwd . > {log} 2>&1"
