"""Policies shipped inside the package, so a practitioner can use GANNO without meta-training.

Each one is a folder ``ganno/pretrained/<name>/`` holding what meta-training writes to
``<run>/policy/`` (``policy.json``, ``actor_params.msgpack``), ``settings.json``: the settings of
the config it was meta-trained with that its commands read (the task, the environment, the
evaluation tasks, the agent; :func:`shipped_settings`), so ``ganno run-policy`` needs no config
file, and ``PROVENANCE.json``: where it came from (the run folder, relative to where the pipeline
ran; its config; the git commit) and the numbers it achieved. ::

    policy = ganno.pretrained_policy()          # the default: "ippo"
    ganno.pretrained.provenance()["headline"]   # what it achieved, and on what
    print(ganno.pretrained.describe())          # all of it, readable (ganno pretrained show)

:func:`refresh` (``ganno pretrained refresh --from RUN/policy --summary FILE``) replaces a shipped
policy with a pipeline's output and writes its settings and provenance, so the files are never
copied by hand; :func:`restamp` (``ganno pretrained refresh --in-place``) rewrites the settings
and the provenance's paths of a policy already shipped by the same code, from what its provenance
recorded.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import re
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ganno.layout import SHIPPED_AGENT as DEFAULT  # the shipped agent, named once

PROVENANCE_FILE = "PROVENANCE.json"
SETTINGS_FILE = "settings.json"
_POLICY_FILES = ("policy.json", "actor_params.msgpack")
#: Every file of a shipped policy's folder (what :func:`refresh` writes).
SHIPPED_FILES = (*_POLICY_FILES, SETTINGS_FILE, PROVENANCE_FILE)
SETTINGS_FORMAT = 1
#: What :func:`shipped_settings` keeps of a run's config: what the commands that take a policy
#: read (``ganno run-policy``, ``sweep``, ``generalise``: the split of the data, the task, the
#: environment, the evaluation's grid and tasks) and the task family meta-training used (the
#: design). ``None``: the whole block. Not the data's ``root``: where the files live is the
#: user's, ``data/`` in the working folder unless a ``--config`` says otherwise.
_SETTINGS_BLOCKS: dict[str, tuple[str, ...] | None] = {
    "data": ("val_fraction", "split_seed"),
    "task": None,
    "env": None,
    "evaluation": None,
    "meta_train": ("task_family",),
}
#: The pipeline's results folder (``layout``'s ``results_dir``): a source path outside the working
#: folder and its repository is recorded from it on.
_RESULTS = "results"


def directory(name: str = DEFAULT) -> Path:
    """The folder of the shipped policy ``name`` (inside the installed package)."""
    folder = Path(__file__).parent / name
    if not (folder / _POLICY_FILES[0]).is_file():
        raise ValueError(f"no pretrained policy {name!r}; the package ships {available()}")
    return folder


def available() -> list[str]:
    """The names of the policies shipped with this installation."""
    here = Path(__file__).parent
    return sorted(p.parent.name for p in here.glob(f"*/{_POLICY_FILES[0]}"))


def load(name: str = DEFAULT) -> Any:
    """The shipped policy ``name`` as a :class:`ganno.Policy` (use it with
    :class:`ganno.torch.GannoScheduler` or :func:`ganno.optax_scheduler.ganno_sgd`)."""
    from ganno.policy import Policy

    return Policy.load(directory(name))


def provenance(name: str = DEFAULT) -> dict[str, Any]:
    """What ``PROVENANCE.json`` records: source run, config, commit, headline numbers, note."""
    return json.loads((directory(name) / PROVENANCE_FILE).read_text())


def settings(name: str = DEFAULT) -> dict[str, Any]:
    """What ``settings.json`` records: the agent and the settings of its config
    (:func:`shipped_settings`)."""
    return json.loads((directory(name) / SETTINGS_FILE).read_text())


# ---------------------------------------------------------------- the settings a policy ships with


def shipped_settings(
    run_config: Mapping[str, Any], *, agent: str | None = None, algorithm: str | None = None
) -> dict[str, Any]:
    """The settings a policy's commands need, from the config its run wrote (``config.yaml``,
    validated here: defaults filled): the blocks of :data:`_SETTINGS_BLOCKS`, with the agent's
    name and algorithm. ``ganno run-policy`` and the evaluation commands use them when no
    ``--config`` is given (:func:`settings_config`)."""
    from ganno.config import validate

    cfg = validate(run_config)
    config = {
        block: dict(cfg[block])
        if keys is None
        else {k: cfg[block][k] for k in keys if k in cfg[block]}
        for block, keys in _SETTINGS_BLOCKS.items()
    }
    return {
        "format_version": SETTINGS_FORMAT,
        "agent": agent,
        "algorithm": algorithm,
        "config": config,
    }


def settings_config(policy_dir: str | Path) -> dict[str, Any] | None:
    """The validated config that the policy in ``policy_dir`` ships with (its ``settings.json``;
    defaults filled for what it leaves out), or None if it ships none."""
    from ganno.config import validate
    from ganno.errors import ConfigError

    path = Path(policy_dir) / SETTINGS_FILE
    if not path.is_file():
        return None
    try:
        return validate(json.loads(path.read_text())["config"])
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise ConfigError(f"{path} is corrupt ({exc}); refresh the policy") from None
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def shipped_agent(policy_dir: str | Path) -> str | None:
    """The agent the policy in ``policy_dir`` was meta-trained as, if it ships its settings."""
    path = Path(policy_dir) / SETTINGS_FILE
    return json.loads(path.read_text()).get("agent") if path.is_file() else None


def check_config(config: Mapping[str, Any], policy_dir: str | Path) -> None:
    """Raise :class:`ganno.errors.PolicyMismatchError` naming the setting if ``config`` (a user's
    ``--config``) gives the policy in ``policy_dir`` other choices or features than its shipped
    settings: what its actions do (:data:`ganno.policy.ACTION_SETTINGS`, the anchored ones only in
    an anchored mode), which steps its features read and which hyperparameters it also sets. The
    task, the budget and the bounds may differ: that is what ``--config`` is for."""
    from ganno.errors import PolicyMismatchError
    from ganno.policy import ACTION_SETTINGS

    shipped = settings_config(policy_dir)
    if shipped is None:
        return
    ours, theirs = shipped["env"], config["env"]
    names = ACTION_SETTINGS if ours["action_mode"] != "compound" else ACTION_SETTINGS[:2]
    for name in (*names, "gradient_window", "momentum_actions", "weight_decay_actions"):
        if ours.get(name) != theirs.get(name):
            raise PolicyMismatchError(
                f"--config sets env.{name} = {theirs.get(name)}, but the policy {policy_dir} was "
                f"meta-trained with {ours.get(name)} (its {SETTINGS_FILE}); leave out --config to "
                "use the settings it ships with, or change that setting"
            )


def _agent_of(source: str, selection: Mapping[str, Any] | None) -> str | None:
    """The agent a policy was meta-trained as: the selection record's, else the one its run
    folder's path names (``layout.META_TRAIN_DIR``), else None."""
    if selection is not None and selection.get("agent"):
        return str(selection["agent"])
    from ganno import layout

    pattern = layout.META_TRAIN_DIR.format(agent="(?P<agent>[^/]+)", seed=r"\d+")
    found = re.search(pattern + r"/policy/?$", Path(source).as_posix())
    return found["agent"] if found else None


def portable_path(path: str | Path) -> str:
    """``path`` as a record should hold it, the same on every machine: relative to the working
    folder (where the pipeline runs) if inside it, else to the git repository holding it, else
    from its ``results/`` folder on; as given otherwise."""
    path = Path(path)
    if not path.is_absolute():
        return path.as_posix()
    for root in (Path.cwd(), _git_top(path)):
        if root is not None and path.is_relative_to(root):
            return path.relative_to(root).as_posix()
    if _RESULTS in path.parts[:-1]:
        last = len(path.parts) - 1 - path.parts[::-1].index(_RESULTS)
        return Path(*path.parts[last:]).as_posix()
    return path.as_posix()


def _git_top(where: Path) -> Path | None:
    """The top folder of the git repository holding ``where`` (None outside one or if absent)."""
    folder = next((p for p in (where, *where.parents) if p.is_dir()), None)
    if folder is None or folder == Path(folder.anchor):
        return None
    try:
        top = subprocess.run(
            ["git", "-C", str(folder), "rev-parse", "--show-toplevel"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return Path(top) if top else None


#: What makes a result (relative to the repository's top): uncommitted changes there mark the
#: commit ``+dirty``. The pipeline's own outputs (``paper/``, the shipped policies) are not in it:
#: a run rewrites them before this policy is copied.
_RESULT_INPUTS = (":(top)src", ":(top)config", ":(top)workflow", ":(top)Snakefile",
                  ":(top,exclude)src/ganno/pretrained")  # fmt: skip


def _git_commit(where: Path) -> str | None:
    """The commit of the repository holding ``where`` (``+dirty`` with uncommitted changes to
    the code, config or workflow: :data:`_RESULT_INPUTS`)."""
    try:
        run = lambda *a: subprocess.run(  # noqa: E731
            ["git", "-C", str(where), *a], capture_output=True, text=True, check=True
        ).stdout.strip()
        commit = run("rev-parse", "HEAD")
        changed = run("status", "--porcelain", "--untracked-files=no", "--", *_RESULT_INPUTS)
        return commit + ("+dirty" if changed else "")
    except (OSError, subprocess.CalledProcessError):
        return None


def _read_summary(path: Path) -> Any:
    """The headline numbers file: JSON as is, CSV as a list of rows, anything else as text."""
    if path.suffix == ".json":
        return json.loads(path.read_text())
    if path.suffix == ".csv":
        with open(path, newline="") as f:
            return list(csv.DictReader(f))
    return path.read_text()


def _write_json(path: Path, value: Any) -> None:
    from ganno.io import atomic_write

    atomic_write(path, json.dumps(value, indent=1) + "\n")


def _write_settings(target: Path, record: Mapping[str, Any]) -> None:
    """Write ``settings.json`` from a provenance record (its run config, source and selection),
    or remove a stale one when the record has no config."""
    path = target / SETTINGS_FILE
    if record.get("config") is None:
        path.unlink(missing_ok=True)
        return
    algorithm = json.loads((target / _POLICY_FILES[0]).read_text()).get("algo")
    agent = _agent_of(record["source"], record.get("selection"))
    _write_json(path, shipped_settings(record["config"], agent=agent, algorithm=algorithm))


def _set_guard(policy_json: Path, guard: bool) -> None:
    """Record in a copied ``policy.json`` whether it deploys with the guard (``env.guard``,
    recorded only when on, as meta-training records it)."""
    record = json.loads(policy_json.read_text())
    env = dict(record.get("env") or {})
    if bool(env.get("guard", False)) == guard:
        return  # already so: the copy stays byte for byte the run's
    env.pop("guard", None)
    if guard:
        env["guard"] = True
    _write_json(policy_json, {**record, "env": env})


def refresh(
    policy_dir: str | Path,
    *,
    summary: str | Path | None = None,
    name: str = DEFAULT,
    note: str | None = None,
    dest: str | Path | None = None,
    selection: Mapping[str, Any] | None = None,
    guard: bool | None = None,
) -> Path:
    """Copy the policy in ``policy_dir`` (a run's ``policy/`` folder) to the shipped policy
    ``name`` and write its ``settings.json`` (:func:`shipped_settings` of the run's
    ``config.yaml``) and ``PROVENANCE.json``: the source (:func:`portable_path`), the run's
    ``config.yaml`` and last learning-curve row (if the run folder has them), the git commit of the
    source's repository, the headline numbers read from ``summary`` (JSON, CSV or text) and
    ``note``. ``dest``: the folder of shipped policies (default: this package's, i.e. the source
    tree in an editable install). ``selection``: how the policy was chosen among its agent's
    meta-training seeds (:func:`ganno.seed_selection.select_seed`'s record), stored as is.
    ``guard``: whether the shipped policy deploys with the guard by default (``env.guard`` in its
    ``policy.json``, what :func:`ganno.deployment.deployment_settings` reads; the pipeline passes
    the config's, so it deploys as the report evaluated it); None keeps what the policy records.
    Returns the policy's new folder."""
    import yaml

    from ganno.policy import Policy

    source = Path(policy_dir)
    Policy.load(source)  # refuse a missing, corrupt or mismatched policy before copying anything
    if summary is not None and not Path(summary).is_file():
        raise FileNotFoundError(f"--summary {summary} does not exist; give the headline table")
    run = source.resolve().parent
    run_config = run / "config.yaml"
    config = yaml.safe_load(run_config.read_text()) if run_config.is_file() else None
    if config is not None:
        shipped_settings(config)  # refuse a config that does not validate before copying
    target = Path(dest if dest is not None else Path(__file__).parent) / name
    target.mkdir(parents=True, exist_ok=True)
    for file in _POLICY_FILES:
        shutil.copyfile(source / file, target / file)
    if guard is not None:
        _set_guard(target / "policy.json", guard)
    curve = run / "learning_curve.jsonl"
    last_row = None
    if curve.is_file():
        lines = [line for line in curve.read_text().splitlines() if line.strip()]
        last_row = json.loads(lines[-1]) if lines else None
    record = {
        "name": name,
        "source": portable_path(source.resolve()),
        "commit": _git_commit(run),
        "refreshed_utc": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "note": note,
        "selection": None if selection is None else dict(selection),
        "headline_source": None if summary is None else portable_path(Path(summary).resolve()),
        "headline": None if summary is None else _read_summary(Path(summary)),
        "meta_training_last_update": last_row,
        "config": config,
    }
    _write_settings(target, record)
    _write_json(target / PROVENANCE_FILE, record)
    return target


def restamp(name: str = DEFAULT, *, dest: str | Path | None = None) -> Path:
    """Rewrite the shipped policy ``name``'s ``settings.json`` and its provenance's paths
    (:func:`portable_path`) from what its ``PROVENANCE.json`` recorded (the run's config, the
    source, the selection), by the code :func:`refresh` runs: a policy shipped before these were
    stored gets them without its run folder. The policy, the commit, the time of the refresh and
    the numbers stay as they are. Returns the policy's folder."""
    target = Path(dest) / name if dest is not None else directory(name)
    if not (target / PROVENANCE_FILE).is_file():
        raise FileNotFoundError(
            f"no {PROVENANCE_FILE} in {target}: refresh it from a run (--from or --selection)"
        )
    record = json.loads((target / PROVENANCE_FILE).read_text())
    record["source"] = portable_path(record["source"])
    if record.get("headline_source"):
        record["headline_source"] = portable_path(record["headline_source"])
    _write_settings(target, record)
    _write_json(target / PROVENANCE_FILE, record)
    return target


# ---------------------------------------------------------------------------- reading it back


def package_version() -> str:
    """The installed ganno's version (the source tree's in a plain checkout)."""
    from importlib import metadata

    try:
        return metadata.version("ganno")
    except metadata.PackageNotFoundError:
        from ganno import __version__

        return __version__


def info(name: str = DEFAULT) -> dict[str, Any]:
    """Everything the package knows about the shipped policy ``name``: its folder, the package
    version, its settings (None if it ships none) and its provenance (``ganno pretrained show
    --json``)."""
    folder = directory(name)
    settings_path = folder / SETTINGS_FILE
    return {
        "name": name,
        "directory": str(folder),
        "ganno_version": package_version(),
        "settings": json.loads(settings_path.read_text()) if settings_path.is_file() else None,
        "provenance": provenance(name),
    }


def describe(name: str = DEFAULT, width: int = 100) -> str:
    """The shipped policy ``name`` in a readable form (``ganno pretrained show``): where it came
    from and how it was chosen, its design, and the headline numbers."""
    record = info(name)
    prov, shipped = record["provenance"], record["settings"]
    out = [f"{name}: a policy shipped with ganno {record['ganno_version']} ({record['directory']})"]
    if prov.get("note"):
        out += _wrap(prov["note"], "  ", width)
    out += ["", "Provenance"]
    out += _field("source", prov.get("source"), width)
    out += _field("commit", prov.get("commit"), width)
    out += _field("refreshed", prov.get("refreshed_utc"), width)
    selection = prov.get("selection")
    if selection:
        out += _field(
            "selection",
            f"seed {selection.get('seed')} of agent {selection.get('agent')}: "
            f"{selection.get('rule', '')}",
            width,
        )
        tasks = ", ".join(selection.get("validation_tasks") or [])
        out += _field("", f"on {tasks} (by {selection.get('tune_by')})", width)
        for seed, score in (selection.get("scores") or {}).items():
            chosen = "  selected" if str(seed) == str(selection.get("seed")) else ""
            out += _field(
                "",
                f"seed {seed}  {_num(score.get('value'))}  "
                f"[{_num(score.get('low'))}, {_num(score.get('high'))}]{chosen}",
                width,
            )
    last = prov.get("meta_training_last_update")
    if last:
        out += _field(
            "meta-training",
            f"{last.get('update')} updates, {last.get('env_steps')} decisions; last mean "
            f"return {_num(last.get('episode_return'))}",
            width,
        )
    out += ["", "Design"]
    if shipped is None:
        out += ["  (no settings.json: commands that run it need --config)"]
    else:
        cfg = shipped["config"]
        agent = f"{shipped.get('agent')} (algorithm {shipped.get('algorithm')})"
        out += _field("agent", agent, width)
        task = cfg["task"]
        out += _field(
            "task",
            f"{task['dataset']}; {_compact(task['network'])}; "
            + _compact({k: v for k, v in task.items() if k not in ("dataset", "network")}),
            width,
        )
        family = [t["name"] for t in cfg["meta_train"].get("task_family") or []]
        out += _field("task family", ", ".join(family) or "none (the task alone)", width)
        env = cfg["env"]
        budget = f"{env['num_decisions']} decisions x {env['steps_per_decision']} steps"
        out += _field("budget", budget, width)
        rest = {k: v for k, v in env.items() if k not in ("num_decisions", "steps_per_decision")}
        out += _field("env", _compact(rest), width)
        tasks = [t["name"] for key in ("generalisation_tasks", "validation_tasks")
                 for t in cfg["evaluation"].get(key) or []]  # fmt: skip
        out += _field("--task", "train, " + ", ".join(tasks), width)
    headline = prov.get("headline")
    if headline is not None:
        out += ["", f"Headline ({prov.get('headline_source')})"]
        out += _headline(headline, width)
    else:
        out += ["", "Headline: none recorded (refreshed without the report's table; the seeds'"]
        out += ["  validation scores are under Provenance)"]
    return "\n".join(out) + "\n"


#: The headline table's columns shown (the robustness table's: :func:`_headline_row`).
_HEADLINE_TITLES = (
    "method",
    "kind",
    "test accuracy [CI]",
    "tuned lr0",
    "robust decades [lr0s]",
    "diverged",
)
#: What the robustness table's shown columns mean (:func:`ganno.tables.robustness_table`).
_HEADLINE_LEGEND = (
    "test accuracy: IQM and 95% CI at the lr0 tuned on validation accuracy; robust decades: the "
    "width of the lr0 range within the tolerance of the method's best; diverged: share of runs"
)


def _headline_row(r: Mapping[str, Any]) -> list[str]:
    """A row of the robustness table under :data:`_HEADLINE_TITLES`."""
    return [
        r["method"],
        r["kind"],
        f"{_num(r['tuned_iqm'])} [{_num(r['tuned_low'])}, {_num(r['tuned_high'])}]",
        _num(r["tuned_lr0"], ".3g"),
        f"{_num(r['robust_decades'], '.1f')} "
        f"[{_num(r['robust_low'], '.3g')}, {_num(r['robust_high'], '.3g')}]",
        f"{100 * float(r['diverged_fraction']):.0f}%",
    ]


def _headline(headline: Any, width: int) -> list[str]:
    """The headline numbers as lines: a table of rows (the robustness table's columns if it has
    them, else every column), a mapping's ``key: value`` lines, or the text."""
    if isinstance(headline, Mapping):
        return [f"  {k}: {v}" for k, v in headline.items()]
    if not isinstance(headline, list):
        return ["  " + line for line in str(headline).splitlines()]
    rows = [r for r in headline if isinstance(r, Mapping)]
    if not rows:
        return [f"  {headline}"]
    legend: list[str] = []
    try:
        table = [_headline_row(r) for r in rows]
        titles, legend = list(_HEADLINE_TITLES), _wrap(_HEADLINE_LEGEND, "  ", width)
    except (KeyError, TypeError, ValueError):
        titles = list(rows[0])
        table = [[str(r.get(t, "")) for t in titles] for r in rows]
    widths = [max(len(str(c)) for c in column) for column in zip(titles, *table, strict=True)]
    return legend + [
        "  " + "  ".join(str(c).ljust(w) for c, w in zip(line, widths, strict=True)).rstrip()
        for line in (titles, *table)
    ]


def _num(value: Any, spec: str = ".4f") -> str:
    try:
        return format(float(value), spec)
    except (TypeError, ValueError):
        return str(value)


def _compact(mapping: Mapping[str, Any]) -> str:
    return ", ".join(f"{k} {json.dumps(v)}" for k, v in mapping.items())


def _wrap(text: str, indent: str, width: int) -> list[str]:
    import textwrap

    return textwrap.wrap(text, width, initial_indent=indent, subsequent_indent=indent) or [indent]


def _field(label: str, value: Any, width: int) -> list[str]:
    """``label`` then ``value``, wrapped to ``width`` under a column of labels."""
    lines = _wrap(str(value), " " * 16, width)
    lines[0] = f"  {label:<13} " + lines[0][16:]
    return lines


__all__ = [
    "DEFAULT",
    "SHIPPED_FILES",
    "available",
    "check_config",
    "describe",
    "directory",
    "info",
    "load",
    "package_version",
    "portable_path",
    "provenance",
    "refresh",
    "restamp",
    "settings",
    "settings_config",
    "shipped_agent",
    "shipped_settings",
]
