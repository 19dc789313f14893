"""A run directory is self-contained: its checkpoints carry the config they were trained with, and `tapo chat` and
`tapo eval` given the run start from it (template, tools, search index, caps) without `--config`.

The run is trained for real (`tapo sft` of a tiny random model), the index is TAPO-mini's real BM25 index and the
search runs through the real tool.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from tapo.cli.main import app
from tapo.config import load_config
from tapo.data.mini import MiniSizes, build_mini
from tapo.eval.result_dir import load_result
from tapo.io.atomic import read_jsonl, write_jsonl
from tapo.io.runs import TRAINED_CONFIG_FILE, trained_config

runner = CliRunner()
# Not the defaults (template `base`, no index, 8 turns of 1,024 tokens): only the run's config gives these.
TRAINED_WITH = ["data.template=minimal", "rollout.max_turns=1", "rollout.max_new_tokens_per_turn=16"]


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, tiny_checkpoint: str) -> tuple[Path, Path]:
    """(the run directory of a finished `tapo sft`, the TAPO-mini directory whose index it was trained with)."""
    root = tmp_path_factory.mktemp("trained")
    mini = root / "mini"
    build_mini(mini, seed=3, sizes=MiniSizes(train=10, validation=10, test=10))
    demos = root / "demos.jsonl"
    write_jsonl(demos, [{"prompt_ids": [1, 2, 3], "response_ids": [4, 5], "model_mask": [1, 1]}])
    with pytest.MonkeyPatch.context() as patch:
        # issue 28: trained with a relative index path (as configs/tiny-cpu.yaml has), used from other directories
        patch.chdir(root)
        result = runner.invoke(
            app,
            [
                "sft", "--demos", str(demos), "--no-progress", f"model.name={tiny_checkpoint}", "sft.epochs=1",
                "run.output_dir=.", "run.name=run", "run.torch_threads=1", *TRAINED_WITH,
                "tools.search.backend.index_dir=mini/index", "tools.search.cache.enabled=false",
            ],
        )  # fmt: skip
    assert result.exit_code == 0, result.output
    return root / "run", mini


def test_each_checkpoint_carries_its_config(trained_run):
    run, mini = trained_run
    model = run / "checkpoints" / "step-1" / "model"
    assert trained_config(model) == model / TRAINED_CONFIG_FILE
    carried = load_config(model / TRAINED_CONFIG_FILE)
    assert carried.data.template == "minimal" and carried.tools.search.backend.index_dir == str(mini / "index")
    assert load_config(run / "config.yaml").run.output_dir == str(run.parent)  # recorded absolute, as given


def test_a_checkpoint_without_its_own_copy_falls_back_to_its_runs_config(tmp_path):
    model = tmp_path / "run" / "checkpoints" / "step-3" / "model"
    model.mkdir(parents=True)
    assert trained_config(model) is None
    (tmp_path / "run" / "config.yaml").write_text("data:\n  template: minimal\n")
    assert trained_config(model) == tmp_path / "run" / "config.yaml"


def test_chat_on_a_trained_run_searches_its_index_without_a_config(trained_run):
    run, mini = trained_run
    title = read_jsonl(mini / "corpus.jsonl")[0]["title"]  # a fictional name: only this index knows it
    search = ["--force", f"<search>{title}</search>"]
    result = runner.invoke(app, ["chat", "--model", str(run), "-q", f"Who is {title}?", *search])
    assert result.exit_code == 0, result.output
    assert "search is off" not in result.output
    assert "tool calls: search x1" in result.stdout
    assert f"(Title: {title})" in result.stdout.split("tool output", 1)[1]

    # The guard: told to ignore the run's config, chat has no index, and the same forced call is refused.
    bare = runner.invoke(
        app,
        [
            "chat",
            "--model",
            str(run),
            "-q",
            "x",
            "--no-trained-config",
            *search,
            *TRAINED_WITH[1:],
            "run.torch_threads=1",
        ],
    )
    assert bare.exit_code == 0, bare.output
    assert "search is off" in bare.output and "tool calls: none" in bare.stdout


def test_eval_on_a_trained_run_uses_its_template_and_index_without_a_config(trained_run, tmp_path):
    run, mini = trained_run
    data = ["--model", str(run), "--data", str(mini / "test.jsonl"), "--limit", "2"]
    result = runner.invoke(app, ["eval", *data, "--out", str(tmp_path / "eval")])
    assert result.exit_code == 0, result.output
    saved = load_result(tmp_path / "eval")
    assert (saved.template, saved.tools_mode) == ("minimal", "all")

    # Without the run's config the index is unknown: one line that names the fix, before the model loads.
    bare = runner.invoke(app, ["eval", *data, "--out", str(tmp_path / "bare"), "--no-trained-config"])
    assert bare.exit_code == 2
    assert "needs tools.search.backend.index_dir" in bare.output and "tapo index build" in bare.output
