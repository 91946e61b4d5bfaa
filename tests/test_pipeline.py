"""The Snakemake pipeline end to end on the tiny config, and the default config's DAG."""

from __future__ import annotations

import json
import re
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import nbformat
import pandas as pd
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
# One worker runs every test of the test pipeline (and the SLURM run, which compares with it).
pytestmark = pytest.mark.xdist_group("pipeline")
WORKFLOW_FILES = ("Snakefile", "workflow", "profiles", "config", "notebooks")
REPORT = Path("results") / "test_paper"  # config/test.yaml's report.dir: never the committed paper/


def _copy_workflow(dest: Path) -> None:
    for name in WORKFLOW_FILES:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, dest / name, symlinks=False)
        else:
            shutil.copy(src, dest / name)


def _snakemake(cwd: Path, *args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["snakemake", *args], cwd=cwd, capture_output=True, text=True, timeout=timeout
    )


def _png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return struct.unpack(">II", head[16:24])


def run_test_pipeline(work: Path) -> None:
    """config/test.yaml run locally in a copy of the workflow: the fixture `pipeline_run`."""
    _copy_workflow(work)
    result = _snakemake(work, "--cores", "2", "--configfile", "config/test.yaml")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


def test_every_final_file_is_written(pipeline_run):
    paper = pipeline_run / REPORT
    assert not (pipeline_run / "paper").exists()  # the committed report is not touched
    # nor the shipped policy: the test config refreshes a copy beside its report
    assert not (pipeline_run / "src").exists()
    refreshed = json.loads((paper / "pretrained" / "ippo" / "PROVENANCE.json").read_text())
    assert refreshed["source"].endswith("results/meta_train/ippo/seed_0/policy")
    assert {row["method"] for row in refreshed["headline"]} >= {"ganno_ippo", "sgd_constant"}
    assert (paper / "pretrained" / "ippo" / "actor_params.msgpack").stat().st_size > 1_000
    from ganno.config import load_config
    from ganno.layout import TABLE_FORMATS, figure_names, table_names

    config = load_config(pipeline_run / "results" / "config.yaml")
    figures, tables = figure_names(config), table_names(config)
    assert "torch_deployment" in figures and "torch_deployment" in tables
    # no question agent in the test config: no question's figures or tables
    assert not any(name.startswith(("q1_", "q2_")) for name in figures)
    assert not {"q1", "q2"} & set(tables)
    for name in figures:
        width, height = _png_size(paper / "figures" / f"{name}.png")
        assert width >= 600 and height >= 300
        assert (paper / "figures" / f"{name}.png").stat().st_size > 10_000
        assert (paper / "figures" / f"{name}.pdf").stat().st_size > 1_000
        assert len(pd.read_csv(paper / "figures" / f"{name}.csv")) > 0
    for name in tables:
        for ext in TABLE_FORMATS:
            assert (paper / "tables" / f"{name}.{ext}").stat().st_size > 0


def test_tables_have_every_method_and_no_nan(pipeline_run):
    tables = pipeline_run / REPORT / "tables"
    robustness = pd.read_csv(tables / "robustness.csv")
    expected = {"ganno_ippo", "sgd_constant", "sgd_cosine", "adam", "dog"}
    assert set(robustness["method"]) == expected
    generalisation = pd.read_csv(tables / "generalisation.csv")
    assert {"train", "mlp_depth5", "digits"} <= set(generalisation["task"])
    assert "mnist" not in set(generalisation["task"])  # its files are absent: skipped
    for table in (robustness, generalisation, pd.read_csv(tables / "improvement.csv")):
        assert not table.select_dtypes("number").isna().any().any()


def test_the_deployment_is_reported_and_no_question_is(pipeline_run):
    tables = pipeline_run / REPORT / "tables"
    torch = pd.read_csv(tables / "torch_deployment.csv")
    assert {"ganno_ippo", "sgd_constant", "sgd_cosine", "schedule_free_sgd"} <= set(torch["method"])
    assert not (tables / "q1.csv").exists() and not (tables / "q2.csv").exists()
    readme = (pipeline_run / REPORT / "README.md").read_text()
    assert "## PyTorch deployment" in readme
    assert "## Q1" not in readme and "## Q2" not in readme


def test_meta_training_runs_before_any_baseline(pipeline_run):
    # workflow/rules/meta_train.smk: meta-training goes first. Snakemake starts jobs in rounds
    # ("Execute N jobs..."); every meta-training job starts in a round no later than the first
    # baseline sweep's (config/test.yaml's job holds one core, so a sweep may share its round
    # and fill the other; the default config's holds every core).
    logs = sorted((pipeline_run / ".snakemake" / "log").glob("*.snakemake.log"))
    rounds, started = 0, []
    for line in logs[0].read_text().splitlines():
        if line.startswith("Execute "):
            rounds += 1
        elif match := re.match(r"(local)?rule (\w+):", line):
            started.append((rounds, match.group(2)))
    agents = yaml.safe_load((ROOT / "config" / "test.yaml").read_text())["agents"]
    meta = [r for r, rule in started if rule == "meta_train"]
    assert len(meta) == len(agents), started  # one seed each
    first_baseline = min(r for r, rule in started if rule == "sweep_baselines")
    assert max(meta) <= first_baseline, started


def test_results_tables_cover_the_grid(pipeline_run):
    results = pd.read_csv(pipeline_run / "results" / "sweep" / "train" / "baselines.csv")
    # 4 methods x 4 initial rates (1e-3 .. 1) x 2 evaluation seeds
    assert len(results) == 4 * 4 * 2
    assert sorted(results["lr0"].unique()) == pytest.approx([1e-3, 1e-2, 1e-1, 1.0])
    skipped = pipeline_run / "results" / "sweep" / "mnist" / "baselines.csv.skipped"
    assert "train-images-idx3-ubyte" in skipped.read_text()


def test_summary_and_notebooks(pipeline_run):
    readme = (pipeline_run / REPORT / "README.md").read_text()
    for claim in ("C1", "C2", "C3"):
        assert f"## {claim}" in readme
        # every verdict a standing from the two intervals, never a yes/no
        standing = r"\*\*(above|level|below|wider|as wide|narrower)\*\*"
        assert re.search(rf"{claim} (on|pooled) .*{standing}", readme), claim
    assert "holds on test accuracy" not in readme
    assert "figures/robustness.png" in readme
    # The task whose files are absent is named as skipped, with the reason (not "mnist1d").
    assert re.search(r"- task `mnist`: .*train-images-idx3-ubyte", readme)
    assert "`evaluation.tune_by: val_accuracy`" in readme
    for name in (
        "01_meta_training",
        "02_robustness_and_generalisation",
        "03_ganno_in_your_training_loop",
    ):
        notebook = nbformat.read(pipeline_run / "results" / "notebooks" / f"{name}.ipynb", 4)
        code = [c for c in notebook.cells if c.cell_type == "code"]
        assert all(c.get("execution_count") for c in code)
        assert any(o.get("output_type") == "display_data" for c in code for o in c.outputs)


def test_the_report_is_made_as_the_readme_says(pipeline_run):
    # No --cores: the default profile (profiles/default -> workflow/profiles/default) gives them.
    result = _snakemake(pipeline_run, "--configfile", "config/test.yaml", "--report", "report.html")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "profiles/default" in result.stdout + result.stderr
    html = (pipeline_run / "report.html").read_text(errors="replace")
    assert len(html) > 100_000
    assert "robustness.png" in html
    caption = (pipeline_run / "workflow" / "report" / "robustness.rst").read_text().split(";")[0]
    assert caption in html  # the figures' captions


def test_a_second_run_has_nothing_to_do(pipeline_run):
    result = _snakemake(pipeline_run, "--cores", "2", "--configfile", "config/test.yaml", "-n")
    assert result.returncode == 0
    assert "Nothing to be done" in result.stdout + result.stderr


def test_changing_baseline_settings_reruns_only_baselines_and_their_dependants(
    pipeline_run, tmp_path
):
    cfg = (pipeline_run / "config" / "test.yaml").read_text()
    changed = cfg.replace("bootstrap_resamples: 200", "bootstrap_resamples: 300").replace(
        "methods: [sgd_constant, sgd_cosine, adam, dog]", "methods: [sgd_constant, adam, dog]"
    )
    path = tmp_path / "changed.yaml"
    path.write_text(changed)
    result = _snakemake(pipeline_run, "--cores", "2", "--configfile", str(path), "-n")
    assert result.returncode == 0, result.stderr[-2000:]
    jobs = result.stdout + result.stderr
    assert "sweep_baselines" in jobs and "report" in jobs
    assert "meta_train " not in jobs and "rule meta_train:" not in jobs
    assert "rule sweep_agent:" not in jobs


def test_adding_a_task_runs_that_task_alone(pipeline_run, tmp_path):
    """Another task's definition is not a setting of a task's runs: a new generalisation task
    runs its own sweeps (and the report after them), and no other task's."""
    cfg = (pipeline_run / "config" / "test.yaml").read_text()
    changed = cfg.replace(
        "    - {name: digits, task: {dataset: digits}}\n",
        "    - {name: digits, task: {dataset: digits}}\n"
        "    - {name: mlp_narrow, task: {network: {width: 8}}}\n",
    )
    assert changed != cfg
    path = tmp_path / "added.yaml"
    path.write_text(changed)
    result = _snakemake(pipeline_run, "--cores", "2", "--configfile", str(path), "-n")
    assert result.returncode == 0, result.stderr[-2000:]
    jobs = result.stdout + result.stderr
    swept = set(re.findall(r"wildcards: task=(\w+)", jobs))
    assert swept == {"mlp_narrow"}, swept
    assert "rule report:" in jobs or "localrule report:" in jobs
    assert "rule meta_train:" not in jobs and "localrule meta_train:" not in jobs


def test_default_config_dag_dry_run(tmp_path):
    _copy_workflow(tmp_path)
    result = _snakemake(tmp_path, "--cores", "2", "-n")
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout + result.stderr
    for rule in (
        "prepare_data",
        "meta_train",
        "sweep_baselines",
        "sweep_agent",
        "sweep_agent_seeds_0_1",  # the extension agents' own meta-training seeds
        "report",
        "notebook",
        "pretrained_policy",
        "select_pretrained_seed",  # the default config has validation tasks
    ):
        assert rule in out
    # the default config keeps the shipped policy in step with paper/: the rule writes into the
    # package, from the ippo seed its validation tasks select and the report's robustness table
    refresh = out[out.index("rule pretrained_policy:") :]
    refresh = refresh[: refresh.index("\n\n")]
    assert "results/selection/ippo.json" in refresh
    for seed in (0, 1, 2):  # which seed is known only after the validation runs
        assert f"results/meta_train/ippo/seed_{seed}/policy/policy.json" in refresh
    assert "paper/tables/robustness.csv" in refresh
    report = out[out.index("rule report:") :]
    assert "results/selection/ippo.json" in report[: report.index("\n\n")]  # its own row
    for name in ("policy.json", "actor_params.msgpack", "PROVENANCE.json"):
        assert f"src/ganno/pretrained/ippo/{name}" in refresh
    # the tutorial (it runs ganno.pretrained_policy()) runs after the refresh, so it shows this
    # run's shipped policy, not the one the checkout came with; the analysis notebooks read
    # results/ only and do not wait for it
    notebooks = out.split("rule notebook:")[1:]
    assert len(notebooks) == len(list((ROOT / "notebooks").glob("*.ipynb")))
    waits = {
        job.split("input: notebooks/")[1].split(".ipynb")[
            0
        ]: "src/ganno/pretrained/ippo/policy.json" in job[: job.index("\n\n")]
        for job in notebooks
    }
    assert waits == {
        p.stem: "pretrained_policy()" in p.read_text() for p in (ROOT / "notebooks").glob("*.ipynb")
    }
    assert waits["03_ganno_in_your_training_loop"] and not waits["01_meta_training"]


def _planned(work: Path, config_text: str) -> str:
    """The default config's DAG with ``config_text`` merged over it (a dry run in a copy of the
    workflow): what Snakemake prints."""
    _copy_workflow(work)
    extra = work / "extra.yaml"
    extra.write_text(config_text)
    result = _snakemake(work, "--cores", "2", "-n", "--configfile", str(extra))
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout + result.stderr


def test_a_config_without_the_pretrained_agent_still_runs(tmp_path):
    """Only the default agent's policy is refreshed into the package: a config without that
    agent (here MAPPO alone) plans the rest of the pipeline."""
    out = _planned(
        tmp_path, "agents:\n  - {name: mappo, algorithm: mappo}\ntorch_deployment: {agent: mappo}\n"
    )
    assert "rule meta_train:" in out and "pretrained_policy" not in out


def test_a_task_family_agent_needs_every_members_data(tmp_path):
    """Meta-training an agent on a task family waits for every member's dataset."""
    _copy_workflow(tmp_path)
    family = tmp_path / "family.yaml"
    family.write_text(
        "agents:\n  - {name: ippo}\n  - {name: fam, meta_train: {task_family: "
        "[{name: digits_short, task: {dataset: digits}, env: {num_decisions: 20}}]}}\n"
    )
    target = "results/meta_train/fam/seed_0/policy/policy.json"
    result = _snakemake(tmp_path, target, "--cores", "1", "-n", "--configfile", str(family))
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout + result.stderr
    assert "dataset=digits" in out and "dataset=mnist1d" in out  # the family's and the task's


def test_a_bad_config_stops_the_pipeline_naming_the_key(tmp_path):
    _copy_workflow(tmp_path)
    bad = tmp_path / "bad.yaml"
    bad.write_text("env:\n  actions: []\n")
    result = _snakemake(tmp_path, "--cores", "1", "-n", "--configfile", str(bad))
    assert result.returncode != 0
    assert "env.actions" in result.stdout + result.stderr


def test_lint_and_format():
    lint = _snakemake(ROOT, "--lint", "--cores", "1")
    assert lint.returncode == 0, lint.stdout[-3000:] + lint.stderr[-3000:]
    rules = sorted((ROOT / "workflow" / "rules").glob("*.smk"))
    files = [str(ROOT / "Snakefile"), *map(str, rules)]
    fmt = subprocess.run(["snakefmt", "--check", *files], capture_output=True, text=True)
    assert fmt.returncode == 0, fmt.stdout + fmt.stderr


def test_parsing_the_workflow_imports_no_jax(tmp_path):
    # The rules read names and paths from ganno.layout/ganno.agents/ganno.config, which load no
    # JAX, flax, jumanji or PyTorch: `snakemake -n` stays quick.
    _copy_workflow(tmp_path)
    cmd = [sys.executable, "-X", "importtime", "-m", "snakemake", "-n", "--cores", "1",
           "--configfile", "config/test.yaml"]  # fmt: skip
    result = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    imported = {line.split("|")[-1].strip() for line in result.stderr.splitlines()
                if line.startswith("import time:")}  # fmt: skip
    assert "ganno.layout" in imported and "snakemake" in imported
    heavy = {m for m in imported if m.split(".")[0] in ("jax", "flax", "jumanji", "torch")}
    assert not heavy, sorted(heavy)[:10]


def test_the_grid_study_target_tables_the_fine_grid_beside_the_run(pipeline_run):
    # `snakemake grid_study` on the finished run: its four fine-grid sweeps and the table only
    result = _snakemake(
        pipeline_run, "--cores", "2", "grid_study", "--configfile", "config/test.yaml"
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    fine = pipeline_run / "results" / "grid_study" / "sweep"
    # 2 methods x 7 initial rates (1e-3 .. 1, half decades) x 2 evaluation seeds
    assert len(pd.read_csv(fine / "train" / "baselines.csv")) == 2 * 7 * 2
    table = pd.read_csv(pipeline_run / REPORT / "tables" / "grid_study.csv")
    assert list(table["task"].unique()) == ["train"]
    assert list(table["method"][:3]) == ["sgd_constant", "dog", "ganno_ippo"]
    assert (table["coarse_lr0s"] == 4).all() and (table["fine_lr0s"] == 7).all()
    assert table[["coarse_iqm", "fine_iqm"]].notna().all().all()
    agent = table[table["method"] == "ganno_ippo"]
    assert agent["fine_standing"].isin(["above", "level", "below"]).all()
    markdown = (pipeline_run / REPORT / "tables" / "grid_study.md").read_text()
    assert markdown.startswith("Made by `snakemake --cores all grid_study`")
    assert "rule sweep_baselines" not in result.stdout + result.stderr  # the run's own, reused
