"""Issue 26's third environment: examples/units_env.py (questions from code, a `convert_units` tool, a reward
function, a template) trains and evaluates end to end, named by ``--env`` alone: nothing under ``src/`` names it.

One test drives the commands (``tapo train --env``, ``tapo eval --env``) with the transformers engine over a tiny
random checkpoint, as a user would on a CPU; the other scripts the model's turns (:class:`ScriptedEngine`) so that
the tool is certainly called and the environment's reward certainly decides: every other trajectory answers with
the tool's number, the rest with a wrong one.
"""

from __future__ import annotations

import json
import re
from itertools import count
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tapo.cli.main import app
from tapo.data.io import load_examples
from tapo.engines.scripted import ScriptedEngine
from tapo.envs.apply import configure, write_data
from tapo.eval.runner import evaluate
from tapo.io.runs import RunDir
from tapo.train.run import build_rl_run
from tapo.train.setup import make_accelerator
from tiny_task import ONE_STEP

pytestmark = [pytest.mark.timeout(600), pytest.mark.usefixtures("one_thread")]

ROOT = Path(__file__).resolve().parents[2]
NAMES = ("units_env", "convert_units", "within_one_percent")
TINY_RUN = [
    "run.seed=3",
    *ONE_STEP,
    "rollout.max_turns=2",
    "rollout.max_new_tokens_per_turn=64",
    "rollout.max_response_tokens=256",
    "reward.overlong.enabled=false",
]


@pytest.fixture
def home(tmp_path, monkeypatch):
    """The example on the Python path (as a user's package would be) and a TAPO_HOME of the test's own."""
    monkeypatch.syspath_prepend(str(ROOT / "examples"))
    monkeypatch.setenv("TAPO_HOME", str(tmp_path / "home"))
    return tmp_path


def test_the_environment_becomes_settings_and_files(home):
    config = configure(None, ["env.name=units_env:units"])
    assert config.data.template == "compact_convert_units_only"
    assert config.tools.enabled == [] and config.tools.extra == ["units_env:convert_units"]
    assert config.reward.custom_scorers == {"units": "units_env:within_one_percent"}
    assert config.eval.tools == "convert_units"
    files = write_data(config)
    assert files["train"] == Path(config.data.train) and Path(config.data.test).is_file()
    train = load_examples(config.data.train)
    assert len(train) == 300 and {row.data_source for row in train} == {"units"}
    first = files["train"].read_bytes()
    write_data(config)
    assert files["train"].read_bytes() == first  # the questions are the same on every call
    override = configure(None, ["env.name=units_env:units", "data.template=compact"])
    assert override.data.template == "compact"  # a setting given by hand wins over the environment's


def _question_of(text: str) -> tuple[float, str, str]:
    from units_env import NAMES as UNIT_NAMES

    match = re.search(r"How many (.+?) are ([\d.]+) (.+?)\? Round", text)
    assert match, text
    by_name = {name: unit for unit, name in UNIT_NAMES.items()}
    return float(match[2]), by_name[match[3]], by_name[match[1]]


def _script(tokenizer):
    """Turn 0 calls the tool with the question's units; turn 1 answers its number (every other one off by 10 %)."""
    answers = count()

    def turn(context: list[int], index: int) -> str:
        text = tokenizer.decode(context)
        if index == 0:
            value, source, target = _question_of(text)
            call = json.dumps({"value": value, "from_unit": source, "to_unit": target})
            return f"<think> I convert it. </think><convert_units> {call} </convert_units>"
        number = float(re.findall(r"= ([\d.]+) \w+</response>", text)[-1])
        return f"<answer> {number * (1.0 if next(answers) % 2 == 0 else 1.1):.2f} </answer>"

    return turn


def test_a_scripted_policy_calls_the_tool_and_the_reward_decides(home, tiny_checkpoint):
    overrides = [f"model.name={tiny_checkpoint}", f"run.output_dir={home}", "run.name=units", *TINY_RUN]
    config = configure(None, [*overrides, "env.name=units_env:units"])
    write_data(config)
    examples = load_examples(config.data.train)
    run = RunDir.create(config)
    accelerator = make_accelerator(config, run.root)
    scripted = lambda _model, tokenizer: ScriptedEngine(tokenizer, _script(tokenizer))  # noqa: E731
    with build_rl_run(config, run, accelerator, examples, make_engine=scripted) as rl:
        tokenizer = rl.source.tokenizer
        assert rl.source.allowed == {"convert_units"}
        prompt = tokenizer.decode(rl.source.prompt(examples[0]))
        assert "<convert_units>" in prompt and "<search>" not in prompt and "<code>" not in prompt
        rows = rl.train()
    assert rows[0]["tools/convert_units_per_traj"] == 1.0 and rows[0]["tools/failure_rate"] == 0.0
    assert rows[0]["reward/format_error_rate"] == 0.0 and rows[0]["reward/acc"] == 0.5

    result = evaluate(
        config,
        config.model.name,
        config.data.test,
        config.eval.tools,
        samples=1,
        greedy=True,
        limit=4,
        out_dir=home / "eval",
        engine=ScriptedEngine(tokenizer, _script(tokenizer)),
    )
    scores = sorted(trajectory.scored.score for trajectory in result.trajectories)
    assert scores == [0.0, 0.0, 1.0, 1.0]  # the environment's reward: within 1 % or not
    assert result.overall.tool_calls_mean["convert_units"] == 1.0


def test_train_eval_and_chat_commands_take_the_environment(home, tiny_checkpoint):
    """`tapo train --env`, `tapo eval --env` and `tapo chat --env` with the transformers engine over a tiny model:
    what a user runs on a CPU."""
    common = [f"model.name={tiny_checkpoint}", f"run.output_dir={home}", "run.name=units-cli", *TINY_RUN]
    common += ["run.torch_threads=1", "rollout.max_new_tokens_per_turn=16", "rollout.max_response_tokens=48"]
    runner = CliRunner()
    trained = runner.invoke(app, ["train", "--env", "units_env:units", "--no-progress", *common])
    assert trained.exit_code == 0, trained.output
    metrics = (home / "units-cli" / "metrics.jsonl").read_text().splitlines()
    assert len(metrics) == 1 and "reward/mean" in json.loads(metrics[0])
    checkpoint = home / "units-cli"
    evaluated = runner.invoke(
        app, ["eval", "--env", "units_env:units", "-m", str(checkpoint), "-n", "2", "-o", str(home / "ev"), *common]
    )
    assert evaluated.exit_code == 0, evaluated.output
    assert (home / "ev" / "trajectories.jsonl").is_file()
    results = json.loads((home / "ev" / "results.json").read_text())
    assert results["tools_mode"] == "convert_units"
    chat_caps = ["rollout.max_new_tokens_per_turn=48", "rollout.max_response_tokens=128"]  # room for the call
    call = '<convert_units> {"value": 3, "from_unit": "km", "to_unit": "mi"} </convert_units>'
    chatted = runner.invoke(
        app,
        [
            "chat",
            "--env",
            "units_env:units",
            "-m",
            tiny_checkpoint,
            "-q",
            "3 km?",
            "--force",
            call,
            *common,
            *chat_caps,
        ],
    )
    assert chatted.exit_code == 0, chatted.output
    assert "3.0 km = 1.8641 mi" in chatted.output  # the environment's tool ran in the chat's rollout


def test_the_dry_run_checks_render_the_environments_template(home, tiny_checkpoint):
    """`tapo train --env ... --dry-run` reads its prompts with the run's protocol (the tool's template exists)."""
    from tapo.cli.dry_run import check_run

    config = configure(None, ["env.name=units_env:units", f"model.name={tiny_checkpoint}", f"run.output_dir={home}"])
    write_data(config)
    report, examples, _ = check_run(config, gpu_gib=80.0)
    assert report.failures == [] and len(examples) == 300
    assert any("template compact_convert_units_only" in line for line in report.sections["tokens"])


def test_a_bad_environment_is_one_line_per_problem(home, monkeypatch):
    monkeypatch.syspath_prepend(str(home))
    runner = CliRunner()
    missing = runner.invoke(app, ["train", "--env", "no_such_module:units"])
    assert missing.exit_code == 2 and "importing no_such_module failed" in missing.output
    (home / "broken_env.py").write_text(
        "from tapo.envs import Environment\n"
        "broken = Environment(name='broken', dataset=[], tools=(lambda x: x,), rewards={'b': 3})\n"
    )
    result = runner.invoke(app, ["train", "--env", "broken_env:broken"])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if "env 'broken_env:broken'" in line]
    assert len(lines) == 3, result.output  # the dataset, the tool, the reward: each its own line
    assert "dataset is not callable" in result.output and "reward of data source 'b'" in result.output


def test_nothing_under_src_names_the_environment():
    """Adding the environment took no edit inside tapo: `git diff src/` is empty for it."""
    assert not [p for p in (ROOT / "src").rglob("*.py") if any(name in p.read_text() for name in NAMES)]


def test_the_docs_show_the_example_file_as_it_is():
    page = (ROOT / "docs" / "environments.md").read_text(encoding="utf-8")
    assert "```python\n" + (ROOT / "examples" / "units_env.py").read_text(encoding="utf-8") + "```" in page
