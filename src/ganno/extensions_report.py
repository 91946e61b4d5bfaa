"""The report's sections beyond the paper's claims: one per question (Q1 several hyperparameters
per layer, Q2 the reward, or any question an agent names, such as a design study) and the PyTorch
deployment of a trained policy; peers of the claims' section in :mod:`ganno.report`, which reads
the results (:mod:`ganno.layout`) and passes them in.

Each question compares its agents with the reference agent (``extensions.reference``) using the
same statistics as the claims' tables (:mod:`ganno.tables`): the robust lr0 range, the IQM over
all initial rates, the tuned IQM on ``train`` and pooled over the held-out tasks its agents ran on,
test accuracy and test loss, with stratified-bootstrap CIs. Every number in the text is read from
the tables written in the same run.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

from ganno import agents as registry
from ganno import plots, stats, tables
from ganno.config import agent_config
from ganno.layout import TORCH, TRAIN_TASK, agent_tasks, torch_enabled

# --------------------------------------------------------------------------------------------
# Numbers
# --------------------------------------------------------------------------------------------


class ExtensionData(NamedTuple):
    """The results the sections read (from :func:`ganno.report.load_results`)."""

    results: pd.DataFrame  # baselines and the claims' agents (the reference may be one)
    curves: pd.DataFrame  # the claims' agents' learning curves, ``algo`` = agent name
    question_results: pd.DataFrame  # the question agents' rows (results schema)
    question_curves: pd.DataFrame  # their learning curves
    torch: pd.DataFrame | None  # the PyTorch deployment's rows


def question_summary(
    results: pd.DataFrame,
    curves: pd.DataFrame,
    methods: Sequence[str],
    tasks: Sequence[str],
    *,
    tolerance: float,
    labels: Mapping[str, str],
    tune_by: str = "val_accuracy",
    norms: pd.DataFrame | None = None,
    **ci_kwargs: Any,
) -> pd.DataFrame:
    """One row per method of a question: robustness on ``train`` (range, all-lr0 IQM, tuned IQM,
    divergences), tuned IQM on the held-out ``tasks`` (NaN when none ran): with several, pooled
    after normalising each task by ``norms`` (:func:`ganno.tables.normalisers` of the claims'
    baselines; :data:`ganno.tables.POOLING`), with one, that task's own (``held_out_scope``
    names it, ``held_out_normalised`` says which), and the meta-training episode-end validation
    loss over the last 10% of updates."""
    train = results[(results["task"] == TRAIN_TASK) & results["method"].isin(methods)]
    rob = tables.robustness_summary(
        train, tolerance=tolerance, tune_by=tune_by, **ci_kwargs
    ).set_index("method")
    held_out = [t for t in tasks if t != TRAIN_TASK]
    present = results[results["method"].isin(methods) & results["task"].isin(held_out)]
    gen = pd.DataFrame()
    ran = [t for t in held_out if t in set(present["task"])]
    scope = ran[0] if len(ran) == 1 else tables.HELD_OUT
    if ran:
        gen = tables.generalisation_summary(present, ran, tune_by=tune_by, norms=norms, **ci_kwargs)
        gen = gen[gen["task"] == (ran[0] if len(ran) == 1 else tables.ALL_TASKS)]
        gen = gen.set_index("method")
    rows = []
    for method in methods:
        if method not in rob.index:
            continue
        r = rob.loc[method]
        row = {
            "method": method,
            "setting": labels.get(method, ""),
            "robust_decades": r["robust_decades"],
            "all_iqm": r["all_iqm"],
            "all_low": r["all_low"],
            "all_high": r["all_high"],
            "tuned_iqm": r["tuned_iqm"],
            "tuned_low": r["tuned_low"],
            "tuned_high": r["tuned_high"],
            "diverged_fraction": r["diverged_fraction"],
            "held_out_iqm": np.nan,
            "held_out_low": np.nan,
            "held_out_high": np.nan,
            "held_out_tasks": 0,
            "held_out_scope": scope,
            "held_out_normalised": False,
            "meta_train_val_loss": np.nan,
            **{f"{p}_loss_{s}": r[f"{p}_loss_{s}"] for p in ("all", "tuned") for s in STATS},
            **{f"held_out_loss_{s}": np.nan for s in STATS},
        }
        if method in gen.index:
            g = gen.loc[method]
            row.update(
                held_out_iqm=g["iqm"],
                held_out_low=g["low"],
                held_out_high=g["high"],
                held_out_tasks=int(g["tasks"]),
                held_out_normalised=bool(g["normalised"]),
                held_out_loss_iqm=g["loss_iqm"],
                held_out_loss_low=g["loss_low"],
                held_out_loss_high=g["loss_high"],
            )
        algo = registry.agent_of(method)
        if not curves.empty and algo in set(curves["algo"]):
            mine = curves[curves["algo"] == algo].dropna(subset=["val_loss"])
            last = mine[mine["env_steps"] >= 0.9 * mine["env_steps"].max()]
            row["meta_train_val_loss"] = float(last["val_loss"].mean())
        rows.append(row)
    return pd.DataFrame(rows)


STATS = ("iqm", "low", "high")


def question_display(table: pd.DataFrame) -> pd.DataFrame:
    def ci(prefix: str, r: pd.Series) -> str:
        if not np.isfinite(r[f"{prefix}_iqm"]):
            return "-"
        return tables.fmt_ci(r[f"{prefix}_iqm"], r[f"{prefix}_low"], r[f"{prefix}_high"])

    return pd.DataFrame(
        {
            "method": table["method"],
            "setting": table["setting"],
            "robust range (decades)": table["robust_decades"].map(tables.fmt_decades),
            "all lr0, IQM [CI]": [ci("all", r) for _, r in table.iterrows()],
            "tuned, IQM [CI]": [ci("tuned", r) for _, r in table.iterrows()],
            "held-out tuned, IQM [CI]": [
                ci("held_out", r) + (" (normalised)" if r["held_out_normalised"] else "")
                for _, r in table.iterrows()
            ],
            "tuned test loss, IQM [CI]": [ci("tuned_loss", r) for _, r in table.iterrows()],
            "held-out tuned test loss": [ci("held_out_loss", r) for _, r in table.iterrows()],
            "diverged": table["diverged_fraction"].map(lambda x: f"{100 * x:.0f}%"),
            "meta-train val loss": table["meta_train_val_loss"].map(
                lambda x: "-" if not np.isfinite(x) else tables.fmt(x)
            ),
        }
    )


def torch_summary(
    df: pd.DataFrame, *, tolerance: float, tune_by: str = "val_accuracy", **ci_kwargs: Any
) -> pd.DataFrame:
    """Per network (task) and method of the PyTorch deployment: the robustness summary."""
    frames = [
        tables.robustness_summary(part, tolerance=tolerance, tune_by=tune_by, **ci_kwargs).assign(
            task=task
        )
        for task, part in df.groupby("task", sort=True)
    ]
    out = pd.concat(frames, ignore_index=True)
    return out[["task", *[c for c in out.columns if c != "task"]]]


def torch_display(table: pd.DataFrame) -> pd.DataFrame:
    display = tables.robustness_display(table.drop(columns="task"))
    display.insert(0, "network", table["task"].to_numpy())
    return display


def torch_figure(df: pd.DataFrame, stem: str | Path, **ci_kwargs: Any) -> plots.FigurePaths:
    """Final test accuracy against lr0, one panel per PyTorch network, one line per method (mean
    over runs with its bootstrap CI)."""
    data = pd.concat(
        [
            plots.robustness_curves(part, **ci_kwargs).assign(task=t)
            for t, part in df.groupby("task")
        ],
        ignore_index=True,
    )
    tasks = sorted(data["task"].unique())
    palette = plots.method_palette(data["method"].unique())
    with plots._style():
        fig = Figure(figsize=(5.5 * len(tasks), 4.2), layout="constrained")
        axes = np.atleast_1d(fig.subplots(1, len(tasks), sharey=True))
        for ax, task in zip(axes, tasks, strict=True):
            part = data[data["task"] == task]
            for method in plots.method_order(part["method"].unique()):
                line = part[part["method"] == method].sort_values("lr0")
                color = palette[method]
                ax.fill_between(line["lr0"], line["low"], line["high"], color=color, alpha=0.15)
                ax.plot(
                    line["lr0"],
                    line["mean"],
                    marker="o",
                    ms=3,
                    color=color,
                    lw=2.4 if plots.is_ganno(method) else 1.4,
                    label=method,
                )
            ax.set_xscale("log")
            ax.set_xlabel("initial learning rate lr0")
            ax.set_title(task)
        axes[0].set_ylabel("final test accuracy")
        axes[-1].legend(loc="lower left", fontsize=8)
        fig.suptitle("A GANNO policy driving torch.optim.SGD, against PyTorch baselines")
        sns.despine(fig)
        return plots._save(fig, data, stem)


# --------------------------------------------------------------------------------------------
# Text
# --------------------------------------------------------------------------------------------


def _ci_text(r: pd.Series, prefix: str) -> str:
    return tables.fmt_ci(r[f"{prefix}_iqm"], r[f"{prefix}_low"], r[f"{prefix}_high"])


def _compare(name: str, r: pd.Series, ref: pd.Series, ref_name: str, prefix: str, what: str) -> str:
    """``name``'s ``what`` against the reference's: above, level or below from the two intervals
    (:func:`ganno.stats.compare`), both quoted."""
    higher = "loss" not in prefix
    ours, theirs = tables.estimate(r, f"{prefix}_"), tables.estimate(ref, f"{prefix}_")
    return (
        f"`{name}`'s {what}: **{stats.compare(ours, theirs, higher)}** `{ref_name}`'s, "
        f"{_ci_text(r, prefix)} vs {_ci_text(ref, prefix)}"
    )


def held_out_label(table: pd.DataFrame) -> str:
    """How the README names a question table's held-out numbers: one task's, labelled
    single-task, or pooled over several (normalised per task or not)."""
    scope = str(table["held_out_scope"].iloc[0])
    if scope != tables.HELD_OUT:
        return f"on `{scope}` (single task)"
    how = "normalised per task" if table["held_out_normalised"].all() else "raw"
    return f"pooled over the {int(table['held_out_tasks'].max())} held-out tasks ({how})"


def question_lines(question: str, table: pd.DataFrame, reference: str) -> list[str]:
    """The README paragraph of Q1 or Q2, every number read from ``table``."""
    if table.empty or reference not in set(table["method"]):
        return [f"No results for {question} (see Skipped)."]
    t = table.set_index("method")
    ref = t.loc[reference]
    held = held_out_label(table)
    lines = []
    for method, r in t.iterrows():
        if method == reference:
            continue
        span = stats.compare_ranges(r["robust_decades"], ref["robust_decades"])
        parts = [
            _compare(method, r, ref, reference, "tuned", "tuned test accuracy on `train`"),
            f"robust range **{span}** (a count of decades on the lr0 grid, no interval), "
            f"{tables.fmt_decades(r['robust_decades'])} decades vs "
            f"{tables.fmt_decades(ref['robust_decades'])}",
        ]
        if np.isfinite(r["held_out_iqm"]) and np.isfinite(ref["held_out_iqm"]):
            parts.append(
                _compare(method, r, ref, reference, "held_out", f"tuned test accuracy {held}")
            )
        lines.append(f"- {r['setting']}: " + "; ".join(parts) + ".")
    score = "held_out_iqm" if t["held_out_iqm"].notna().all() else "tuned_iqm"
    best = t[score].idxmax()
    where = held if score == "held_out_iqm" else "on `train`"
    lines += [
        "",
        f"Best by tuned test accuracy {where} (point estimate; the standings above say how "
        f"sure): `{best}` ({t.loc[best, 'setting']}, IQM {tables.fmt(t.loc[best, score])}); "
        f"widest robust range: `{t['robust_decades'].idxmax()}` "
        f"({tables.fmt_decades(t['robust_decades'].max())} decades).",
    ]
    return lines


#: How each reward credits a decision (``env.reward``, :data:`ganno.rewards.REWARDS`), for the
#: reading of Q2: only the rewards of the agents compared are quoted.
REWARD_CREDIT: dict[str, str] = {
    "log_val_loss_drop": "`log_val_loss_drop` pays every decision the change in log validation "
    "loss it was followed by, so returns telescope to the whole run's log-loss ratio and each "
    "decision gets a dense, well-scaled signal.",
    "log_val_error_drop": "`log_val_error_drop` does the same with the validation error rate on a "
    "log scale, so late points of accuracy count as much as early ones.",
    "val_accuracy_gain": "`val_accuracy_gain` is dense but quantised (a validation set of fixed "
    "size moves in steps) and flat once accuracy saturates.",
    "final_log_val_loss_drop": "`final_log_val_loss_drop` pays the log-loss ratio only at the end, "
    "leaving PPO's value function and GAE to spread it over all decisions.",
    "counterfactual_log_val_loss_drop": "Counterfactual difference rewards "
    "(`counterfactual_log_val_loss_drop`) isolate each layer's contribution (the loss had that "
    "agent alone kept its choice), at N+1 inner trainings per decision.",
    **{
        f"relative_log_val_{metric}": f"`relative_log_val_{metric}` pays the change of the clipped "
        f"log-ratio of validation {what} between a reference run (the base schedule itself, from "
        "the same weights and minibatches) and the agents' run: what lr0 and the task make easy "
        "or hard cancels out, at 2 inner trainings per decision."
        for metric, what in (("loss", "losses"), ("error", "error rates"))
    },
}


def _q2_why(table: pd.DataFrame, rewards: Sequence[str]) -> list[str]:
    """Reading of the Q2 result: how each compared reward (``rewards``, the reference agent's
    first) credits a decision, tied to the measured order."""
    t = table.set_index("setting")
    order = t["tuned_iqm"].sort_values(ascending=False).index.tolist()
    credit = " ".join(REWARD_CREDIT[r] for r in dict.fromkeys(rewards))
    lines = [
        "",
        f"Why, as far as these numbers say: the rewards differ in how directly they credit a "
        f"decision. {credit}",
        f"Measured order by tuned test accuracy on `train`: {' > '.join(f'`{s}`' for s in order)}.",
    ]
    losses = t["meta_train_val_loss"].dropna()
    if not losses.empty:
        lines.append(
            "Meta-training episode-end validation loss (last 10% of updates, lower is better): "
            + ", ".join(f"`{s}` {tables.fmt(v)}" for s, v in losses.sort_values().items())
            + "."
        )
    return lines


def torch_lines(table: pd.DataFrame) -> list[str]:
    if table.empty:
        return ["No PyTorch deployment results (see Skipped)."]
    lines = []
    for task, part in table.groupby("task", sort=True):
        t = part.set_index("method")
        ganno = [m for m in t.index if plots.is_ganno(m)]
        others = [m for m in t.index if not plots.is_ganno(m)]
        if not ganno or not others:
            continue
        g = t.loc[ganno[0]]
        best = t.loc[others, "tuned_iqm"].idxmax()
        widest = t.loc[others, "robust_decades"].idxmax()
        lines.append(
            f"- `{task}`: "
            + _compare(ganno[0], g, t.loc[best], best, "tuned", "tuned test accuracy")
            + f" (the best baseline tuned); runs at chance {g['at_chance']:.1%} (baselines: "
            + ", ".join(f"`{m}` {t.loc[m, 'at_chance']:.1%}" for m in others)
            + f"); `{ganno[0]}`'s robust range "
            f"{tables.fmt_decades(g['robust_decades'])} decades, all-lr0 IQM "
            f"{tables.fmt(g['all_iqm'])}; widest baseline range: `{widest}` "
            f"{tables.fmt_decades(t.loc[widest, 'robust_decades'])} decades, all-lr0 IQM of "
            + ", ".join(f"`{m}` {tables.fmt(t.loc[m, 'all_iqm'])}" for m in others)
            + "."
        )
    return lines


# --------------------------------------------------------------------------------------------
# Everything
# --------------------------------------------------------------------------------------------


class Extensions(NamedTuple):
    figures: dict[str, plots.FigurePaths]
    tables: dict[str, tables.TablePaths]
    numbers: dict[str, pd.DataFrame]
    lines: list[str]  # the README sections
    skipped: dict[str, str]


class _Section(NamedTuple):
    figures: dict[str, plots.FigurePaths]
    tables: dict[str, tables.TablePaths]
    numbers: dict[str, pd.DataFrame]
    lines: list[str]


def question_section(
    question: str,
    out_dir: Path,
    config: Mapping[str, Any],
    results: pd.DataFrame,
    curves: pd.DataFrame,
    tasks: Sequence[str],
    norms: pd.DataFrame | None = None,
) -> _Section:
    """The table, figures and README section of one question: its agents against the reference,
    on ``tasks`` (``results`` and ``curves`` hold the reference's and the question agents')."""
    ci, by = tables.ci_kwargs(config), tables.tune_by(config)
    tol = float(config["baselines"]["robustness_tolerance"])
    ref_agent = registry.get(config, registry.reference(config))
    reference = ref_agent.method
    if ref_agent.question is None and not ref_agent.overrides:
        ref_label = (
            f"reference {ref_agent.name.upper()}: learning rate only, reward "
            f"{config['env']['reward']}"
        )
    else:
        ref_label = f"reference: {ref_agent.setting()}"
    members = [a for a in registry.agents(config, question) if a.method != reference]
    title = registry.question_title(config, question)
    methods = [reference] + [a.method for a in members]
    labels = {reference: ref_label} | {a.method: a.setting() for a in members}
    table = question_summary(
        results, curves, methods, tasks, tolerance=tol, labels=labels, tune_by=by, norms=norms, **ci
    )
    q = question.lower()
    written = {
        q: tables.write_table(
            table,
            question_display(table),
            out_dir / "tables" / q,
            f"{question}: {title}; test accuracy and test loss, IQM [95% CI].",
        )
    }
    train = results[(results["task"] == TRAIN_TASK) & results["method"].isin(methods)]
    names = [registry.agent_of(m) for m in methods]
    figures = {
        f"{q}_robustness": plots.robustness_figure(
            train,
            out_dir / "figures" / f"{q}_robustness",
            train_range=config["env"]["lr0_range"],
            **ci,
        ),
        f"{q}_curves": plots.meta_training_curves(
            curves[curves["algo"].isin(names)], out_dir / "figures" / f"{q}_curves"
        ),
    }
    lines = [f"## {question} {title[0].upper()}{title[1:]}", ""]
    lines += question_lines(question, table, reference)
    if question == "Q2":
        rewards = [agent_config(config, registry.agent_of(m))["env"]["reward"] for m in methods]
        lines += _q2_why(table, rewards)
    lines += [""]
    lines += tables.figure_lines(
        out_dir,
        figures[f"{q}_robustness"],
        f"{question}: final test accuracy against lr0 on `{TRAIN_TASK}`.",
    )
    lines += tables.figure_lines(
        out_dir,
        figures[f"{q}_curves"],
        f"{question}: meta-training curves (returns of different rewards are on different "
        "scales; the validation loss is comparable).",
    )
    lines += [f"Table: `tables/{q}.md`.", ""]
    return _Section(figures, written, {q: table}, lines)


def torch_section(out_dir: Path, config: Mapping[str, Any], df: pd.DataFrame | None) -> _Section:
    """The table, figure and README section of the PyTorch deployment."""
    lines = ["## PyTorch deployment", ""]
    if df is None:
        return _Section({}, {}, {}, [*lines, "No PyTorch deployment results (see Skipped).", ""])
    ci, by = tables.ci_kwargs(config), tables.tune_by(config)
    tol = float(config["baselines"]["robustness_tolerance"])
    table = torch_summary(df, tolerance=tol, tune_by=by, **ci)
    written = {
        TORCH: tables.write_table(
            table,
            torch_display(table),
            out_dir / "tables" / TORCH,
            "A GANNO policy in a PyTorch training loop against PyTorch baselines.",
        )
    }
    figures = {TORCH: torch_figure(df, out_dir / "figures" / TORCH, **ci)}
    lines += [
        "The policy meta-trained in JAX drives the per-layer learning rates of "
        "`torch.optim.SGD` through `ganno.torch.GannoScheduler` (features computed in "
        "PyTorch), against PyTorch's constant and cosine SGD and "
        "`schedulefree.SGDScheduleFree`:",
        "",
        *torch_lines(table),
        "",
        *tables.figure_lines(
            out_dir, figures[TORCH], "PyTorch deployment: final test accuracy against lr0."
        ),
        f"Table: `tables/{TORCH}.md`.",
        "",
    ]
    return _Section(figures, written, {TORCH: table}, lines)


def build_extensions(
    out_dir: str | Path, config: Mapping[str, Any], data: ExtensionData
) -> Extensions:
    """Tables, figures and the README sections of every question and the PyTorch deployment."""
    out = Path(out_dir)
    ref_agent = registry.get(config, registry.reference(config))
    results = pd.concat(
        [data.results[data.results["method"] == ref_agent.method], data.question_results],
        ignore_index=True,
    )
    curves = pd.concat(
        [data.curves[data.curves["algo"] == ref_agent.name], data.question_curves],
        ignore_index=True,
    )
    present = set(data.results["task"])
    # the claims' baselines normalise every question's pooled numbers, as the claims'
    norms = tables.normalisers(data.results, sorted(present), tables.tune_by(config))
    sections = []
    for question in registry.questions(config):
        ran = {t for a in registry.agents(config, question) for t in agent_tasks(config, a)}
        tasks = [t for t in agent_tasks(config, ref_agent) if t in ran and t in present]
        sections.append(question_section(question, out, config, results, curves, tasks, norms))
    if torch_enabled(config):
        sections.append(torch_section(out, config, data.torch))
    merged = Extensions({}, {}, {}, [], {})
    for section in sections:
        merged.figures.update(section.figures)
        merged.tables.update(section.tables)
        merged.numbers.update(section.numbers)
        merged.lines.extend(section.lines)
    return merged
