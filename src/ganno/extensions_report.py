"""The report of the extensions beyond the paper: Q1 (several hyperparameters per layer), Q2 (the
reward) and the PyTorch deployment of a trained policy.

Read by :func:`ganno.report.build_report` from these files (relative to the results folder)::

    sweep/<task>/variants/<variant>_seed_<s>.csv            a variant's policy, lr0 grid x seeds
    sweep/<task>/variants/<variant>_seed_<s>.schedules.csv  its per-layer rates on that task
    meta_train/variants/<variant>/seed_<s>/learning_curve.jsonl
    torch/deployment.csv                       the PyTorch deployment (ganno torch-eval)

Each question compares its variants with the reference algorithm's agents
(``extensions.reference``, the main IPPO agents by default), using the same statistics as the
paper's tables: the robust lr0 range, the IQM over all initial rates, the tuned IQM on ``train``
and pooled over the held-out tasks the variants ran on, with stratified-bootstrap CIs. Every
number in the text is read from the tables written in the same run.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

from ganno import plots, report
from ganno.config import TRAIN_TASK
from ganno.experiments import read_results
from ganno.meta_train import read_curve
from ganno.variants import QUESTIONS, method_name, variant_spec, variant_tasks, variants

VARIANT_CSV = "sweep/{task}/variants/{variant}_seed_{seed}.csv"
VARIANT_SCHEDULES_CSV = "sweep/{task}/variants/{variant}_seed_{seed}.schedules.csv"
VARIANT_CURVE = "meta_train/variants/{variant}/seed_{seed}/learning_curve.jsonl"
TORCH_CSV = "torch/deployment.csv"
TORCH = "torch_deployment"


def questions(config: Mapping[str, Any]) -> list[str]:
    """The questions (Q1, Q2) with at least one configured variant besides the reference."""
    reference = config.get("extensions", {}).get("reference", "ippo")
    return [q for q in QUESTIONS if any(v["name"] != reference for v in variants(config, q))]


def torch_enabled(config: Mapping[str, Any]) -> bool:
    """Whether the pipeline evaluates the PyTorch deployment (``torch_deployment.enabled``)."""
    block = config.get(TORCH) or {}
    return bool(block.get("enabled", False)) and bool(block.get("networks"))


def figure_names(config: Mapping[str, Any]) -> list[str]:
    names = [f"{q.lower()}_{kind}" for q in questions(config) for kind in ("robustness", "curves")]
    return names + ([TORCH] if torch_enabled(config) else [])


def table_names(config: Mapping[str, Any]) -> list[str]:
    return [q.lower() for q in questions(config)] + ([TORCH] if torch_enabled(config) else [])


class ExtensionPaths(NamedTuple):
    results: dict[tuple[str, str, int], Path]  # (task, variant, meta seed) -> CSV
    curves: dict[tuple[str, int], Path]  # (variant, meta seed) -> JSONL
    torch: Path | None


def extension_paths(
    config: Mapping[str, Any], results_dir: str | Path = "results"
) -> ExtensionPaths:
    root = Path(results_dir)
    names = [v["name"] for v in variants(config)]
    seeds, tasks = config["meta_train"]["seeds"], variant_tasks(config)
    return ExtensionPaths(
        results={
            (t, v, s): root / VARIANT_CSV.format(task=t, variant=v, seed=s)
            for t in tasks
            for v in names
            for s in seeds
        },
        curves={
            (v, s): root / VARIANT_CURVE.format(variant=v, seed=s) for v in names for s in seeds
        },
        torch=root / TORCH_CSV if torch_enabled(config) else None,
    )


def extension_inputs(config: Mapping[str, Any], results_dir: str | Path = "results") -> list[str]:
    """Every file the extensions' report reads (part of the report rule's input)."""
    paths = extension_paths(config, results_dir)
    files = [*paths.results.values(), *paths.curves.values()]
    return [str(p) for p in files] + ([str(paths.torch)] if paths.torch is not None else [])


# --------------------------------------------------------------------------------------------
# Numbers
# --------------------------------------------------------------------------------------------


class ExtensionData(NamedTuple):
    results: pd.DataFrame  # the variants' rows (results schema)
    curves: pd.DataFrame  # their learning curves, ``algo`` = variant name
    torch: pd.DataFrame | None  # the PyTorch deployment's rows
    skipped: dict[str, str]


def load_extensions(results_dir: str | Path, config: Mapping[str, Any]) -> ExtensionData:
    root = Path(results_dir)
    paths = extension_paths(config, root)
    skipped: dict[str, str] = {}
    frames = []
    for path in paths.results.values():
        df = report._read_csv_or_skip(path, root, skipped, lambda p: read_results([p]))
        if df is not None:
            frames.append(df)
    results = pd.concat(frames, ignore_index=True) if frames else read_results([])
    results["diverged"] = results["diverged"].astype(bool)
    curve_frames = []
    for (variant, seed), path in paths.curves.items():
        rows = read_curve(path)
        if not rows:
            skipped[str(path.relative_to(root))] = "missing or empty learning curve"
            continue
        curve_frames.append(pd.DataFrame(rows).assign(algo=variant, seed=seed))
    curves = pd.concat(curve_frames, ignore_index=True) if curve_frames else pd.DataFrame()
    torch = None
    if paths.torch is not None:
        torch = report._read_csv_or_skip(paths.torch, root, skipped, lambda p: read_results([p]))
        if torch is not None:
            torch["diverged"] = torch["diverged"].astype(bool)
    return ExtensionData(results, curves, torch, skipped)


def question_summary(
    results: pd.DataFrame,
    curves: pd.DataFrame,
    methods: Sequence[str],
    tasks: Sequence[str],
    *,
    tolerance: float,
    labels: Mapping[str, str],
    **ci_kwargs: Any,
) -> pd.DataFrame:
    """One row per method of a question: robustness on ``train`` (range, all-lr0 IQM, tuned IQM,
    divergences), tuned IQM pooled over the held-out ``tasks`` (stratified; NaN when none ran),
    and the meta-training episode-end validation loss over the last 10% of updates."""
    train = results[(results["task"] == TRAIN_TASK) & results["method"].isin(methods)]
    rob = report.robustness_summary(train, tolerance=tolerance, **ci_kwargs).set_index("method")
    held_out = [t for t in tasks if t != TRAIN_TASK]
    present = results[results["method"].isin(methods) & results["task"].isin(held_out)]
    gen = pd.DataFrame()
    if held_out and not present.empty:
        gen = report.generalisation_summary(present, held_out, **ci_kwargs)
        gen = gen[gen["task"] == report.ALL_TASKS].set_index("method")
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
            "meta_train_val_loss": np.nan,
        }
        if method in gen.index:
            g = gen.loc[method]
            row.update(
                held_out_iqm=g["iqm"],
                held_out_low=g["low"],
                held_out_high=g["high"],
                held_out_tasks=int(g["tasks"]),
            )
        algo = method.removeprefix(plots.GANNO_PREFIX)
        if not curves.empty and algo in set(curves["algo"]):
            mine = curves[curves["algo"] == algo].dropna(subset=["val_loss"])
            last = mine[mine["env_steps"] >= 0.9 * mine["env_steps"].max()]
            row["meta_train_val_loss"] = float(last["val_loss"].mean())
        rows.append(row)
    return pd.DataFrame(rows)


def question_display(table: pd.DataFrame) -> pd.DataFrame:
    def ci(prefix: str, r: pd.Series) -> str:
        if not np.isfinite(r[f"{prefix}_iqm"]):
            return "-"
        return report.fmt_ci(r[f"{prefix}_iqm"], r[f"{prefix}_low"], r[f"{prefix}_high"])

    return pd.DataFrame(
        {
            "method": table["method"],
            "setting": table["setting"],
            "robust range (decades)": table["robust_decades"].map(report.fmt_decades),
            "all lr0, IQM [CI]": [ci("all", r) for _, r in table.iterrows()],
            "tuned, IQM [CI]": [ci("tuned", r) for _, r in table.iterrows()],
            "held-out tuned, IQM [CI]": [ci("held_out", r) for _, r in table.iterrows()],
            "diverged": table["diverged_fraction"].map(lambda x: f"{100 * x:.0f}%"),
            "meta-train val loss": table["meta_train_val_loss"].map(
                lambda x: "-" if not np.isfinite(x) else report.fmt(x)
            ),
        }
    )


def torch_summary(df: pd.DataFrame, *, tolerance: float, **ci_kwargs: Any) -> pd.DataFrame:
    """Per network (task) and method of the PyTorch deployment: the robustness summary."""
    frames = [
        report.robustness_summary(part, tolerance=tolerance, **ci_kwargs).assign(task=task)
        for task, part in df.groupby("task", sort=True)
    ]
    out = pd.concat(frames, ignore_index=True)
    return out[["task", *[c for c in out.columns if c != "task"]]]


def torch_display(table: pd.DataFrame) -> pd.DataFrame:
    display = report.robustness_display(table.drop(columns="task"))
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
    return report.fmt_ci(r[f"{prefix}_iqm"], r[f"{prefix}_low"], r[f"{prefix}_high"])


def _overlap(a: pd.Series, b: pd.Series, prefix: str) -> bool:
    return not (
        a[f"{prefix}_low"] > b[f"{prefix}_high"] or b[f"{prefix}_low"] > a[f"{prefix}_high"]
    )


def _compare(name: str, r: pd.Series, ref: pd.Series, ref_name: str, prefix: str, what: str) -> str:
    diff = r[f"{prefix}_iqm"] - ref[f"{prefix}_iqm"]
    verdict = "higher than" if diff > 0 else "lower than" if diff < 0 else "equal to"
    hedge = (
        " (the intervals overlap)"
        if _overlap(r, ref, prefix)
        else " (the intervals do not overlap)"
    )
    return (
        f"`{name}` {what} {_ci_text(r, prefix)}, {verdict} `{ref_name}`'s "
        f"{_ci_text(ref, prefix)}{hedge}"
    )


def question_lines(question: str, table: pd.DataFrame, reference: str) -> list[str]:
    """The README paragraph of Q1 or Q2, every number read from ``table``."""
    if table.empty or reference not in set(table["method"]):
        return [f"No results for {question} (see Skipped)."]
    t = table.set_index("method")
    ref = t.loc[reference]
    lines = []
    for method, r in t.iterrows():
        if method == reference:
            continue
        parts = [
            _compare(
                method, r, ref, reference, "tuned", "reaches a tuned test accuracy on `train` of"
            ),
            f"robust range {report.fmt_decades(r['robust_decades'])} decades against "
            f"{report.fmt_decades(ref['robust_decades'])}",
        ]
        if np.isfinite(r["held_out_iqm"]) and np.isfinite(ref["held_out_iqm"]):
            parts.append(
                _compare(method, r, ref, reference, "held_out", "pooled over the held-out tasks:")
            )
        lines.append(f"- {r['setting']}: " + "; ".join(parts) + ".")
    score = "held_out_iqm" if t["held_out_iqm"].notna().all() else "tuned_iqm"
    best = t[score].idxmax()
    where = "pooled over the held-out tasks" if score == "held_out_iqm" else "on `train`"
    lines += [
        "",
        f"Best by tuned test accuracy {where}: `{best}` ({t.loc[best, 'setting']}, "
        f"IQM {report.fmt(t.loc[best, score])}); best robust range: "
        f"`{t['robust_decades'].idxmax()}` ({report.fmt_decades(t['robust_decades'].max())} "
        "decades).",
    ]
    return lines


def _q2_why(table: pd.DataFrame) -> list[str]:
    """Reading of the Q2 result: how each reward's signal differs, tied to the measured order."""
    t = table.set_index("setting")
    order = t["tuned_iqm"].sort_values(ascending=False).index.tolist()
    lines = [
        "",
        "Why, as far as these numbers say: the rewards differ in how directly they credit a "
        "decision. `log_val_loss_drop` pays every decision the change in log validation loss it "
        "was followed by, so returns telescope to the whole run's log-loss ratio and each decision "
        "gets a dense, well-scaled signal. `val_accuracy_gain` is dense too but quantised (a "
        "validation set of fixed size moves in steps) and flat once accuracy saturates. "
        "`final_log_val_loss_drop` pays the same total only at the end, leaving PPO's value "
        "function and GAE to spread it over all decisions. Counterfactual difference rewards "
        "isolate each layer's contribution (the loss had that agent alone kept its rate), at "
        f"{'N+1'} inner trainings per decision.",
        f"Measured order by tuned test accuracy on `train`: {' > '.join(f'`{s}`' for s in order)}.",
    ]
    losses = t["meta_train_val_loss"].dropna()
    if not losses.empty:
        lines.append(
            "Meta-training episode-end validation loss (last 10% of updates, lower is better): "
            + ", ".join(f"`{s}` {report.fmt(v)}" for s, v in losses.sort_values().items())
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
            f"- `{task}`: `{ganno[0]}` tuned {_ci_text(g, 'tuned')}, robust range "
            f"{report.fmt_decades(g['robust_decades'])} decades, all-lr0 IQM "
            f"{report.fmt(g['all_iqm'])}; best baseline tuned: `{best}` "
            f"{_ci_text(t.loc[best], 'tuned')}; widest baseline range: `{widest}` "
            f"{report.fmt_decades(t.loc[widest, 'robust_decades'])} decades, all-lr0 IQM of "
            + ", ".join(f"`{m}` {report.fmt(t.loc[m, 'all_iqm'])}" for m in others)
            + "."
        )
    return lines


# --------------------------------------------------------------------------------------------
# Everything
# --------------------------------------------------------------------------------------------


class Extensions(NamedTuple):
    figures: dict[str, plots.FigurePaths]
    tables: dict[str, report.TablePaths]
    numbers: dict[str, pd.DataFrame]
    lines: list[str]  # the README section
    skipped: dict[str, str]


def _setting(spec: Mapping[str, Any]) -> str:
    if spec.get("description"):
        return str(spec["description"])
    env = spec.get("env", {})
    parts = [f"{k}={v}" for k, v in env.items()]
    return ", ".join(parts) or spec["name"]


def build_extensions(
    results_dir: str | Path,
    out_dir: str | Path,
    config: Mapping[str, Any],
    main: report.ReportData,
) -> Extensions:
    """Tables, figures and the README section of Q1, Q2 and the PyTorch deployment."""
    out = Path(out_dir)
    data = load_extensions(results_dir, config)
    ci = report._ci_kwargs(config)
    tol = float(config["baselines"]["robustness_tolerance"])
    ext = config["extensions"]
    reference = method_name(ext["reference"])
    if ext["reference"] in config["meta_train"]["algorithms"]:
        ref_label = (
            f"reference {ext['reference'].upper()}: learning rate only, reward "
            f"{config['env']['reward']}"
        )
    else:
        ref_label = f"reference: {_setting(variant_spec(config, ext['reference']))}"
    tasks = [t for t in variant_tasks(config) if t in set(main.results["task"])]
    results = pd.concat(
        [main.results[main.results["method"] == reference], data.results], ignore_index=True
    )
    curves = pd.concat(
        [main.curves[main.curves["algo"] == ext["reference"]], data.curves], ignore_index=True
    )
    figures: dict[str, plots.FigurePaths] = {}
    tables: dict[str, report.TablePaths] = {}
    numbers: dict[str, pd.DataFrame] = {}
    lines: list[str] = []
    for question in questions(config):
        specs = [v for v in variants(config, question) if method_name(v["name"]) != reference]
        if not specs:
            continue
        methods = [reference] + [method_name(v["name"]) for v in specs]
        labels = {reference: ref_label} | {method_name(v["name"]): _setting(v) for v in specs}
        table = question_summary(
            results, curves, methods, tasks, tolerance=tol, labels=labels, **ci
        )
        q = question.lower()
        numbers[q] = table
        tables[q] = report.write_table(
            table,
            question_display(table),
            out / "tables" / q,
            f"{question}: {QUESTIONS[question]}; test accuracy IQM [95% CI].",
        )
        train = results[(results["task"] == TRAIN_TASK) & results["method"].isin(methods)]
        figures[f"{q}_robustness"] = plots.robustness_figure(
            train, out / "figures" / f"{q}_robustness", train_range=config["env"]["lr0_range"], **ci
        )
        names = [m.removeprefix(plots.GANNO_PREFIX) for m in methods]
        figures[f"{q}_curves"] = plots.meta_training_curves(
            curves[curves["algo"].isin(names)], out / "figures" / f"{q}_curves"
        )
        lines += [f"## {question} {QUESTIONS[question].capitalize()}", ""]
        lines += question_lines(question, table, reference)
        if question == "Q2":
            lines += _q2_why(table)
        lines += [""]
        lines += report.figure_lines(
            out,
            figures[f"{q}_robustness"],
            f"{question}: final test accuracy against lr0 on `{TRAIN_TASK}`.",
        )
        lines += report.figure_lines(
            out,
            figures[f"{q}_curves"],
            f"{question}: meta-training curves (returns of different rewards are on different "
            "scales; the validation loss is comparable).",
        )
        lines += [f"Table: `tables/{q}.md`.", ""]
    if torch_enabled(config):
        lines += ["## PyTorch deployment", ""]
        if data.torch is None:
            lines += ["No PyTorch deployment results (see Skipped).", ""]
        else:
            table = torch_summary(data.torch, tolerance=tol, **ci)
            numbers[TORCH] = table
            tables[TORCH] = report.write_table(
                table,
                torch_display(table),
                out / "tables" / TORCH,
                "A GANNO policy in a PyTorch training loop against PyTorch baselines.",
            )
            figures[TORCH] = torch_figure(data.torch, out / "figures" / TORCH, **ci)
            lines += [
                "The policy meta-trained in JAX drives the per-layer learning rates of "
                "`torch.optim.SGD` through `ganno.torch.GannoScheduler` (features computed in "
                "PyTorch), against PyTorch's constant and cosine SGD and "
                "`schedulefree.SGDScheduleFree`:",
                "",
                *torch_lines(table),
                "",
                *report.figure_lines(
                    out, figures[TORCH], "PyTorch deployment: final test accuracy against lr0."
                ),
                f"Table: `tables/{TORCH}.md`.",
                "",
            ]
    return Extensions(figures, tables, numbers, lines, data.skipped)
