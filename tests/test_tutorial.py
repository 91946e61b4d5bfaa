"""The notebooks run from their own folder, as a user opens them in Jupyter, and find the clone's
config, results and data through the package (ganno.config.load_project_config)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from ganno.config import CONFIG_ENV, find_project, load_project_config

ROOT = Path(__file__).resolve().parents[1]
TUTORIAL = "03_ganno_in_your_training_loop.ipynb"


def _clone(tmp_path: Path) -> Path:
    """A folder laid out as a clone: config/config.yaml (the tiny test config) and notebooks/."""
    (tmp_path / "config").mkdir()
    shutil.copy(ROOT / "config" / "test.yaml", tmp_path / "config" / "config.yaml")
    (tmp_path / "notebooks").mkdir()
    shutil.copy(ROOT / "notebooks" / TUTORIAL, tmp_path / "notebooks" / TUTORIAL)
    return tmp_path


def test_the_project_config_is_found_from_any_folder_of_a_clone(tmp_path, monkeypatch):
    clone = _clone(tmp_path)
    monkeypatch.delenv(CONFIG_ENV, raising=False)
    assert find_project(clone / "notebooks") == clone.resolve()
    config, root = load_project_config(clone / "notebooks")
    assert root == clone.resolve()
    assert config["data"]["root"] == str(clone.resolve() / "data")
    # the pipeline's resolved config wins over config/config.yaml once a run wrote it
    (clone / "results").mkdir()
    (clone / "results" / "config.yaml").write_text("seed: 7\n")
    assert load_project_config(clone / "notebooks")[0]["seed"] == 7
    # $GANNO_CONFIG names another file; relative paths still resolve against the clone
    other = tmp_path / "other.yaml"
    other.write_text("seed: 3\ndata: {root: elsewhere}\n")
    monkeypatch.setenv(CONFIG_ENV, str(other))
    config, _ = load_project_config(clone / "notebooks")
    assert (config["seed"], config["data"]["root"]) == (3, str(clone.resolve() / "elsewhere"))


def test_outside_a_clone_the_defaults_apply_relative_to_the_working_folder(tmp_path, monkeypatch):
    monkeypatch.delenv(CONFIG_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    if find_project(tmp_path) is not None:
        pytest.skip("the temporary folder lies inside a clone")
    config, root = load_project_config()
    assert root == tmp_path.resolve()
    assert config["data"]["root"] == str(tmp_path.resolve() / "data")


# The pipeline executes every notebook from notebooks/ (workflow/rules/report.smk, rule notebook;
# tests/test_pipeline.py::test_summary_and_notebooks): the tutorial from its own folder.
