"""Issue 28: every command that loads a model checks it first (one line, exit 2, a fix), a missing run says it is
missing, and a run's damaged newest checkpoint falls back to the newest intact one, as resume does."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tapo.cli.main import app
from tapo.io.atomic import write_jsonl
from tapo.models.resolve import resolve_model

runner = CliRunner()
TINY_FILES = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "chat_template.jinja")


def _one_line_exit_2(result, *expected: str) -> None:
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 2, result.output
    assert len(lines) == 1 and lines[0].startswith("error:"), result.output
    assert all(text in lines[0] for text in expected), result.output


def _model(target: Path, tiny: str, files=TINY_FILES, config: object | None = None, cut: bool = False) -> Path:
    """A model directory with ``files`` of the tiny checkpoint, ``config`` as its config.json, weights ``cut``."""
    target.mkdir(parents=True)
    for name in files:
        shutil.copy(Path(tiny) / name, target / name)
    if config is not None:
        (target / "config.json").write_text(json.dumps(config))
    if cut:
        weights = target / "model.safetensors"
        weights.write_bytes(weights.read_bytes()[:4096])
    return target


def _run(root: Path, tiny: str, cut_newest: bool) -> Path:
    """A run directory with step-1 intact and step-2 (truncated when ``cut_newest``)."""
    for step, cut in ((1, False), (2, cut_newest)):
        _model(root / "checkpoints" / f"step-{step}" / "model", tiny, cut=cut)
        (root / "checkpoints" / f"step-{step}" / "trainer_state.json").write_text(json.dumps({"step": step}))
    return root


@pytest.fixture
def train_file(tmp_path):
    path = tmp_path / "train.jsonl"
    write_jsonl(path, [{"id": "q0", "question": "q0?", "data_source": "nq", "golds": ["x"]}])
    return path


def _llama(tiny: str) -> dict:
    return json.loads((Path(tiny) / "config.json").read_text())


@pytest.mark.parametrize(
    ("files", "config", "cut", "expected"),
    [
        (TINY_FILES, [1, 2], False, "holds a JSON list, not a model config"),
        (TINY_FILES, {"model_type": "no-such-type"}, False, "model_type='no-such-type' is not a model type"),
        (("config.json", "tokenizer.json"), None, False, "has a config.json but no weights"),
        (("config.json", "model.safetensors"), None, False, "has no tokenizer"),
        (TINY_FILES, None, True, "model.safetensors is corrupt or truncated"),
        ((), None, False, "neither a model checkpoint (no config.json) nor a run directory"),
    ],
    ids=["config-list", "unknown-type", "no-weights", "no-tokenizer", "truncated", "empty"],
)
def test_train_and_sft_check_the_model_files_first(tmp_path, tiny_checkpoint, train_file, files, config, cut, expected):
    """Each was a traceback once the model started to load (TypeError, ValueError, OSError, a request to install
    sentencepiece, SafetensorError)."""
    model = _model(tmp_path / "model", tiny_checkpoint, files, config, cut)
    common = [f"model.name={model}", f"run.output_dir={tmp_path / 'runs'}", "run.name=r"]
    train = ["train", "--no-progress", f"data.train={train_file}", "data.template=no_tools", *common]
    _one_line_exit_2(runner.invoke(app, train), f"model.name='{model}'", expected)
    sft = ["sft", "--demos", str(tmp_path / "demos.jsonl"), *common]
    _one_line_exit_2(runner.invoke(app, sft), expected)
    assert not (tmp_path / "runs").exists()


def test_a_missing_run_says_so_before_anything_else(tmp_path, train_file, monkeypatch):
    """`tapo eval --model runs/nonexistent` complained about the search index; `tapo chat` asked the hub."""
    monkeypatch.chdir(tmp_path)  # no runs/ here: the name still means a run, not a hub id
    result = runner.invoke(app, ["eval", "--model", "runs/nonexistent", "--data", str(train_file)])
    _one_line_exit_2(result, "--model='runs/nonexistent': no such directory")
    _one_line_exit_2(runner.invoke(app, ["chat", "--model", "runs/nonexistent", "-q", "x"]), "no such directory")
    (tmp_path / "runs" / "empty" / "checkpoints").mkdir(parents=True)
    result = runner.invoke(app, ["eval", "--model", "runs/empty", "--data", str(train_file)])
    _one_line_exit_2(result, "has no complete checkpoint yet")


def test_a_truncated_newest_checkpoint_falls_back_with_a_warning(tmp_path, tiny_checkpoint, caplog):
    run = _run(tmp_path / "run", tiny_checkpoint, cut_newest=True)
    assert resolve_model(str(run)) == str(run / "checkpoints" / "step-1" / "model")
    assert "step-2/model/model.safetensors is corrupt or truncated" in caplog.text
    assert "falling back to the previous checkpoint" in caplog.text
    intact = _run(tmp_path / "intact", tiny_checkpoint, cut_newest=False)
    assert resolve_model(str(intact)) == str(intact / "checkpoints" / "step-2" / "model")


def test_chat_on_a_run_with_truncated_weights_uses_the_intact_checkpoint(tmp_path, tiny_checkpoint, one_thread, caplog):
    """`tapo chat` on a run whose newest weights were truncated ended in SafetensorError."""
    run = _run(tmp_path / "run", tiny_checkpoint, cut_newest=True)
    fast = ["rollout.max_new_tokens_per_turn=4", "rollout.max_turns=0", "tools.enabled=[]", "--template", "no_tools"]
    result = runner.invoke(app, ["chat", "--model", str(run), "-q", "x", *fast])
    assert result.exit_code == 0, result.output
    assert "falling back to the previous checkpoint" in result.output + caplog.text


def test_an_empty_model_directory_in_a_run_says_what_is_missing(tmp_path, train_file):
    """An empty ``model/`` asked to install sentencepiece (the tokenizer was the first thing that failed)."""
    (tmp_path / "run" / "checkpoints" / "step-1" / "model").mkdir(parents=True)
    args = ["eval", "--model", str(tmp_path / "run"), "--data", str(train_file), "--tools", "none"]
    result = runner.invoke(app, [*args, f"run.output_dir={tmp_path / 'runs'}"])
    _one_line_exit_2(result, "has no intact checkpoint", "step-1/model has no config.json")
    assert "sentencepiece" not in result.output


def test_chat_on_a_run_with_no_intact_checkpoint_is_one_line(tmp_path, tiny_checkpoint):
    run = tmp_path / "run"
    _model(run / "checkpoints" / "step-1" / "model", tiny_checkpoint, cut=True)
    result = runner.invoke(app, ["chat", "--model", str(run), "-q", "x"])
    assert result.exit_code == 2 and "has no intact checkpoint" in result.output, result.output
    assert "Traceback" not in result.output
