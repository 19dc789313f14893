"""`tapo train` / `tapo sft` refuse bad input with exit code 2 and one line, before loading any model."""

from __future__ import annotations

from typer.testing import CliRunner

from tapo.cli.main import app
from tapo.io.atomic import write_text


def _invoke(*args: str):
    return CliRunner().invoke(app, list(args))


def test_train_needs_training_data(tmp_path) -> None:
    result = _invoke("train", f"run.output_dir={tmp_path}")
    assert result.exit_code == 2 and "data.train is not set" in result.output
    result = _invoke("train", f"data.train={tmp_path / 'nope.jsonl'}")
    assert result.exit_code == 2 and "no such dataset file" in result.output
    result = _invoke("train", f"data.train={tmp_path}")  # issue 16 item 7: said "does not exist"
    assert result.exit_code == 2 and "a directory, not a dataset file" in result.output


def test_train_rejects_bad_keys_and_values() -> None:
    result = _invoke("train", "trainer.bogus=1")
    assert result.exit_code == 2 and "unknown config key 'trainer.bogus'" in result.output
    result = _invoke("train", "trainer.mini_batch_size=6", "trainer.micro_batch_size=4")
    assert result.exit_code == 2 and "multiple" in result.output


def test_resume_needs_a_run_directory(tmp_path) -> None:
    result = _invoke("train", "--resume", str(tmp_path))
    assert result.exit_code == 2 and "no config.yaml" in result.output


def test_existing_run_is_not_overwritten(tmp_path, tiny_checkpoint) -> None:
    data = tmp_path / "train.jsonl"
    write_text(data, '{"id": "a", "question": "q?", "data_source": "nq", "golds": ["x"]}\n')
    (tmp_path / "runs" / "r" / "checkpoints" / "step-1").mkdir(parents=True)
    # a valid run: what the directory holds is looked at under the run's lock, after the checks of the input
    settings = [f"model.name={tiny_checkpoint}", "data.template=compact_no_tools"]
    result = _invoke("train", f"data.train={data}", f"run.output_dir={tmp_path / 'runs'}", "run.name=r", *settings)
    assert result.exit_code == 2 and "--resume" in result.output


def test_sft_needs_demonstrations(tmp_path) -> None:
    result = _invoke("sft", "--demos", str(tmp_path / "none.jsonl"))
    assert result.exit_code == 2 and "does not exist" in result.output


def test_train_refuses_a_run_over_the_memory_available_before_loading_the_model(
    tmp_path, tiny_checkpoint, monkeypatch
) -> None:
    """The CPU estimate (tiny model: ~0.5 GiB, mostly the runtime) against a forced 0.1 GiB: one line naming the
    setting to lower, exit 2, no model loaded and no run directory made."""
    import tapo.train.setup

    def no_load(*args, **kwargs):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(tapo.train.setup, "load_policy", no_load)
    monkeypatch.setenv("TAPO_MEMORY_GIB", "0.1")
    data = tmp_path / "train.jsonl"
    write_text(data, '{"id": "a", "question": "q?", "data_source": "nq", "golds": ["x"]}\n')
    args = [f"data.train={data}", f"run.output_dir={tmp_path / 'runs'}", f"model.name={tiny_checkpoint}"]
    result = _invoke("train", *args, "tools.enabled=[]", "trainer.max_steps=1")
    assert result.exit_code == 2, result.output
    line = " ".join(result.output.split())  # one line, however the terminal wraps it
    assert line.startswith("error: memory: this CPU run needs about") and line.count("memory:") == 1
    assert "over the 0.1 GiB available; lower " in line
    assert not (tmp_path / "runs").exists()
