"""The design study of the agents: which design options (objective, action mode, observation
normalisation) move which number, against the baselines, on the training task.

Reads the results tables that ``workflow/scripts/design_study.sh`` writes (one per design agent
and meta-training seed, plus the baselines) and writes ``design_study.{csv,md}``: per method the
tuned test accuracy and test loss (lr0 tuned on validation, :func:`ganno.baselines.tune`), the
IQM over every lr0 and run, the robust range, the divergence rate and, for each design agent, the
probability that one of its tuned runs beats one of the best handcrafted SGD schedule's; all with
95% stratified-bootstrap CIs over runs (meta-training seeds x evaluation seeds).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ganno import stats, tables
from ganno.agents import agents, get, question_title, reference
from ganno.env_settings import BASE_SCHEDULES
from ganno.experiments import read_results

#: The handcrafted SGD schedules (the baselines of the first target): those a base schedule can be.
HANDCRAFTED = BASE_SCHEDULES
TABLE = "design_study"
#: The question of the main study; another question's agents (a follow-up study run with
#: ``design_study.sh CONFIG RESULTS TABLES QUESTION``) get a table of their own, beside the
#: reference agent (``extensions.reference``) and the baselines of the same runs.
MAIN_QUESTION = "design"


def table_name(question: str = MAIN_QUESTION) -> str:
    """``design_study`` for the main study, ``design_study_<question>`` for a follow-up."""
    return TABLE if question == MAIN_QUESTION else f"{TABLE}_{question}"


def study_agents(config: Mapping[str, Any], question: str = MAIN_QUESTION) -> list[Any]:
    """The agents a study meta-trains: the question's, and for a follow-up question the
    reference agent too (first), so that its table compares like with like."""
    found = agents(config, question)
    if not found:
        raise ValueError(f"no agent of question {question!r} in the config's agents")
    if question != MAIN_QUESTION and reference(config) not in {a.name for a in found}:
        found = [get(config, reference(config)), *found]
    return found


def study_paths(
    config: Mapping[str, Any], results: str | Path, question: str = MAIN_QUESTION
) -> dict[str, list[Path]]:
    """The results CSVs of the study: ``{"baselines": [...], method: [one per seed]}``."""
    root = Path(results) / "sweep"
    seeds = config["meta_train"]["seeds"]
    paths = {"baselines": [root / "baselines.csv"]}
    for agent in study_agents(config, question):
        paths[agent.method] = [root / f"{agent.name}_seed_{s}.csv" for s in seeds]
    return paths


def load_study(
    config: Mapping[str, Any], results: str | Path, question: str = MAIN_QUESTION
) -> tuple[pd.DataFrame, list[str]]:
    """All runs of the study that exist, and the paths that are missing."""
    found, missing = [], []
    for files in study_paths(config, results, question).values():
        for path in files:
            (found if path.is_file() else missing).append(path)
    df = read_results(found)
    df["diverged"] = df["diverged"].astype(bool)
    return df, [str(p) for p in missing]


def study_table(
    df: pd.DataFrame,
    config: Mapping[str, Any],
    question: str = MAIN_QUESTION,
    **ci_kwargs: Any,
) -> pd.DataFrame:
    """One row per method (design agents first, then the baselines by tuned test accuracy)."""
    tolerance = float(config["baselines"]["robustness_tolerance"])
    tune_by = tables.tune_by(config)
    train = df[df["task"] == "train"]
    summary = tables.robustness_summary(
        train, tolerance=tolerance, tune_by=tune_by, **ci_kwargs
    ).set_index("method")
    tuned = tables.tuned_results(train, tune_by)
    handcrafted = summary[summary.index.isin(HANDCRAFTED)]
    best_sgd = str(handcrafted["tuned_iqm"].idxmax()) if not handcrafted.empty else None
    descriptions = {a.method: a.setting() for a in study_agents(config, question)}
    rows = []
    for method, r in summary.iterrows():
        row = {
            "method": method,
            "kind": "design agent" if method in descriptions else "baseline",
            "setting": descriptions.get(method, ""),
            "tuned_lr0": r["tuned_lr0"],
            "tuned_accuracy": r["tuned_iqm"],
            "tuned_accuracy_low": r["tuned_low"],
            "tuned_accuracy_high": r["tuned_high"],
            "tuned_loss": r["tuned_loss_iqm"],
            "tuned_loss_low": r["tuned_loss_low"],
            "tuned_loss_high": r["tuned_loss_high"],
            "all_accuracy": r["all_iqm"],
            "all_accuracy_low": r["all_low"],
            "all_accuracy_high": r["all_high"],
            "robust_decades": r["robust_decades"],
            "diverged_fraction": r["diverged_fraction"],
            "runs_per_lr0": int(r["runs"] / max(r["lr0_points"], 1)),
            "tune_by": tune_by,
            "vs": best_sgd or "",
            "p_improvement": np.nan,
            "p_improvement_low": np.nan,
            "p_improvement_high": np.nan,
        }
        if best_sgd and method in descriptions:
            mine = tuned.loc[tuned["method"] == method, "test_accuracy"].to_numpy(float)
            theirs = tuned.loc[tuned["method"] == best_sgd, "test_accuracy"].to_numpy(float)
            p = stats.probability_of_improvement({"train": mine}, {"train": theirs}, **ci_kwargs)
            row.update(p_improvement=p.value, p_improvement_low=p.low, p_improvement_high=p.high)
        rows.append(row)
    out = pd.DataFrame(rows)
    out["_baseline"] = out["kind"] != "design agent"
    out = out.sort_values(["_baseline", "tuned_accuracy"], ascending=[True, False])
    return out.drop(columns="_baseline").reset_index(drop=True)


def study_display(table: pd.DataFrame) -> pd.DataFrame:
    def ci(r: pd.Series, prefix: str) -> str:
        if not np.isfinite(r[prefix]):
            return "-"
        return tables.fmt_ci(r[prefix], r[f"{prefix}_low"], r[f"{prefix}_high"])

    return pd.DataFrame(
        {
            "method": table["method"],
            "setting": table["setting"],
            "tuned test accuracy": [ci(r, "tuned_accuracy") for _, r in table.iterrows()],
            "tuned test loss": [ci(r, "tuned_loss") for _, r in table.iterrows()],
            "all-lr0 test accuracy": [ci(r, "all_accuracy") for _, r in table.iterrows()],
            "robust range (decades)": table["robust_decades"].map(tables.fmt_decades),
            "P(beats best SGD schedule)": [ci(r, "p_improvement") for _, r in table.iterrows()],
            "diverged": table["diverged_fraction"].map(lambda x: f"{100 * x:.0f}%"),
        }
    )


def report_tuning(config: Mapping[str, Any]) -> str:
    """How lr0 is tuned, in the words of the paper's summary (the same rule for every method)."""
    from ganno.report import tuning_statement

    return tuning_statement(config)


def write_study(
    config: Mapping[str, Any],
    results: str | Path,
    out_dir: str | Path,
    question: str = MAIN_QUESTION,
) -> tuple[Path, Path]:
    """Write ``<table_name(question)>.csv`` (the numbers) and ``.md`` (the display) to
    ``out_dir``."""
    df, missing = load_study(config, results, question)
    if df.empty:
        raise FileNotFoundError(
            f"no design-study results under {results}/sweep; run workflow/scripts/design_study.sh"
        )
    table = study_table(df, config, question, **tables.ci_kwargs(config))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    csv, md = out / f"{table_name(question)}.csv", out / f"{table_name(question)}.md"
    table.to_csv(csv, index=False)
    best_sgd = table["vs"].iloc[0] if len(table) else ""
    follow_up = (
        "" if question == MAIN_QUESTION else f" ({question}: {question_title(config, question)})"
    )
    lines = [
        f"Design study{follow_up} on the training task (MNIST-1D MLP 40-64-64-10, default "
        "budget): IQM "
        "[95% stratified-bootstrap CI] over meta-training seeds x evaluation seeds; "
        f"{report_tuning(config)} P(beats best SGD schedule): the probability that a tuned run of "
        f"the agent has a higher test accuracy than a tuned run of {best_sgd}, the handcrafted "
        "SGD schedule with the best tuned test accuracy.",
        "",
        study_display(table).to_markdown(index=False),
        "",
    ]
    if missing:
        lines += [f"Missing (not yet run): {len(missing)} tables, e.g. {missing[0]}.", ""]
    md.write_text("\n".join(lines))
    return csv, md
