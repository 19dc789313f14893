from __future__ import annotations

import pytest
from typer.testing import CliRunner

from tapo.cli.main import app
from tapo.config import ConfigError, load_config, parse_overrides

runner = CliRunner()


def test_overrides_parse_yaml_scalars():
    tree = parse_overrides(["trainer.lr=5e-6", "tools.enabled=[search]", "trainer.filter_groups=false"])
    assert tree == {"trainer": {"lr": 5e-6, "filter_groups": False}, "tools": {"enabled": ["search"]}}


def test_yaml_then_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("trainer:\n  lr: 1.0e-5\n  group_size: 8\nrun:\n  name: a\n")
    config = load_config(path, ["trainer.lr=2e-6"])
    assert config.trainer.lr == 2e-6
    assert config.trainer.group_size == 8
    assert config.run.name == "a"


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("trainer.lrr=1", "unknown config key 'trainer.lrr'; allowed keys here:"),
        ("trainer.lr=abc", "bad config value trainer.lr='abc'"),
        ("trainer.group_size=1", "bad config value trainer.group_size=1"),
        ("rollout.engine=tpu", "bad config value rollout.engine='tpu'"),
        ("nosection.x=1", "unknown config key 'nosection'"),
        ("trainer.micro_batch_size=3", "must be a multiple"),
    ],
)
def test_bad_config_is_one_line(override, expected):
    with pytest.raises(ConfigError) as info:
        load_config(None, [override])
    message = str(info.value)
    assert expected in message
    assert "\n" not in message


@pytest.mark.parametrize("override", ["trainer.lrr=1", "trainer.lr=abc", "trainer.clip_low=-1"])
def test_cli_config_error_exit_code_2_and_nothing_written(tmp_path, override):
    result = runner.invoke(app, ["config", "show", f"run.output_dir={tmp_path / 'runs'}", override])
    assert result.exit_code == 2
    assert "error:" in result.output
    assert not (tmp_path / "runs").exists()


def test_cli_config_show_prints_resolved(tmp_path):
    result = runner.invoke(app, ["config", "show", "trainer.lr=3e-6"])
    assert result.exit_code == 0, result.output
    assert "lr: 3.0e-06" in result.output


def test_missing_config_file():
    with pytest.raises(ConfigError, match="does not exist"):
        load_config("/nonexistent.yaml")
