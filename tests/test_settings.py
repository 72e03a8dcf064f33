"""Advanced settings: --config FILE / 'key = value', [tool.labelaudit.scan] in pyproject.toml, the
unlisted --<setting> flags, their order of precedence, and the one-line errors."""
from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from labelaudit.cli import app
from labelaudit.config import ScanConfig, settings
from labelaudit.errors import UsageError
from labelaudit.robust import TrainConfig

from .conftest import FAST_ARGS

runner = CliRunner()


def test_files_and_lines_in_order_later_wins(tmp_path):
    (tmp_path / "scan.toml").write_text('[scan]\nproxy-runs = 3\naugment = "crop"\nlr = 1\n')
    values = settings(ScanConfig, [str(tmp_path / "scan.toml"), "augment = 'none'"], section="scan",
                      start=tmp_path)
    assert values == {"proxy_runs": 3, "augment": "none", "lr": 1.0}
    assert isinstance(values["lr"], float)


def test_pyproject_table_is_found_from_a_subfolder(tmp_path):
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\n\n[tool.labelaudit.scan]\nseed = 7\n'
                                             '\n[tool.labelaudit.train]\nsln = 0.5\n')
    (tmp_path / "a" / "b").mkdir(parents=True)
    assert settings(ScanConfig, section="scan", start=tmp_path / "a" / "b") == {"seed": 7}
    assert settings(TrainConfig, section="train", start=tmp_path / "a") == {"sln": 0.5}
    assert settings(ScanConfig, section="scan", start=tmp_path, discover=False) == {}


@pytest.mark.parametrize("source,message", [
    ("proxy_run = 3", r"unknown scan setting 'proxy_run' \(did you mean 'proxy_runs'\?\)"),
    ("seed = 'seven'", r"seed = 'seven': expected int"),
    ("augment = crop", r"not a file, nor a TOML line"),
    ("missing.toml", r"--config missing.toml: no such file"),
])
def test_bad_settings_name_the_source_and_the_fix(tmp_path, source, message):
    with pytest.raises(UsageError, match=message):
        settings(ScanConfig, [source], section="scan", start=tmp_path)


def test_a_file_without_the_table_says_which_to_add(tmp_path):
    (tmp_path / "other.toml").write_text("[check]\nmax-noise-rate = 0.1\n")
    with pytest.raises(UsageError, match=r"no \[scan\] or \[tool.labelaudit.scan\] table"):
        settings(ScanConfig, [str(tmp_path / "other.toml")], section="scan", start=tmp_path)


@pytest.mark.slow
def test_cli_precedence_defaults_file_config_flag_listed_option(color_folder, tmp_path, monkeypatch):
    """pyproject.toml < --config < an unlisted --<setting> flag < a listed option."""
    root, _ = color_folder
    project = tmp_path / "project"
    project.mkdir()
    (project / "pyproject.toml").write_text('[tool.labelaudit.scan]\nseed = 3\nreport-top = 5\npseudo_k = 4\n'
                                           'threshold = 0.4\n')
    monkeypatch.chdir(project)
    res = runner.invoke(app, ["scan", str(root), "-o", str(tmp_path / "a"), "-q", *FAST_ARGS, "--no-report",
                              "--config", "report_top = 6", "--config", "pseudo_k = 5", "--pseudo-k", "6",
                              "--threshold", "0.45"])
    assert res.exit_code == 0, res.output
    config = json.loads((tmp_path / "a" / "run.json").read_text())["config"]
    assert (config["seed"], config["report_top"], config["pseudo_k"], config["threshold"]) == (3, 6, 6, 0.45)
    assert config["report"] is False and config["batch_size"] == 16  # FAST_ARGS' --batch-size


def test_cli_setting_errors_are_one_line(color_folder, tmp_path):
    root, _ = color_folder
    for args, message in ((["--config", "fusin = 'z-mean'"], "did you mean 'fusion'"),
                          (["--lr", "fast"], "'fast': expected a number"),
                          (["--no-such-thing"], "No such option")):
        res = runner.invoke(app, ["scan", str(root), "-o", str(tmp_path / "a"), *args])
        assert res.exit_code == 2 and message in res.output and "Traceback" not in res.output, res.output


def test_settings_command_lists_every_field_with_its_default_and_why():
    res = runner.invoke(app, ["settings", "scan"], env={"COLUMNS": "200"})
    assert res.exit_code == 0
    lines = {line.split()[0]: line for line in res.output.splitlines()[1:] if line.strip()}
    assert set(lines) == {f for f in ScanConfig.__dataclass_fields__}
    assert "'z-mean'" in lines["fusion"] and "rank-mean" in lines["fusion"]
    assert "lower it when the GPU runs out of memory" in lines["batch_size"]
    train = runner.invoke(app, ["settings", "train"], env={"COLUMNS": "200"}).output
    assert "meta_kl" in train and "SLN" in train
    assert runner.invoke(app, ["settings", "predict"]).exit_code == 2


def test_train_refuses_a_correction_the_meta_step_would_ignore():
    with pytest.raises(UsageError, match="--correction forward with the meta step"):
        TrainConfig(correction="forward", meta_reweight=True).validate()
