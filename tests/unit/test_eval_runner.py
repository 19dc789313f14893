"""Evaluation end to end through the real rollout and reward: hand-counted with a scripted engine, and a
tiny real model through the transformers engine."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from tapo.config import TapoConfig
from tapo.config.schema import BM25SearchConfig, TransformersEngineConfig
from tapo.data.io import save_examples
from tapo.data.schema import Example
from tapo.engines.scripted import ScriptedEngine
from tapo.eval.metrics import OVERALL, compute_metrics
from tapo.eval.modes import MODE_TOOLS, TOOL_MODES, template_for_mode
from tapo.eval.report import build_report
from tapo.eval.result_dir import load_result, load_trajectories
from tapo.eval.runner import (
    EvalSetup,
    Progressed,
    default_out_dir,
    evaluate,
    evaluate_ablation,
    load_eval_data,
    work_share,
)
from tapo.eval.samples import to_records
from tapo.prompts.templates import get_template
from tapo.records import Trajectory

EXAMPLES = [
    Example(id="add", question="What is 2 plus 2?", data_source="calculator", golds=["4"], meta={"needs": []}),
    Example(id="city", question="Capital of France?", data_source="nq", golds=["Paris"], meta={"needs": ["search"]}),
    Example(id="broken", question="Say something.", data_source="nq", golds=["yes"], meta={"needs": []}),
]


def config(**rollout) -> TapoConfig:
    cfg = TapoConfig()
    cfg.rollout = cfg.rollout.model_copy(
        update={"max_turns": 1, "max_response_tokens": 256, "max_new_tokens_per_turn": 64, **rollout}
    )
    cfg.reward.overlong.enabled = False
    return cfg


@pytest.fixture
def data_file(tmp_path: Path) -> Path:
    return save_examples(EXAMPLES, tmp_path / "set.jsonl")


def scripted(tokenizer) -> ScriptedEngine:
    """Answers by question: ``add`` right then wrong on alternate samples, ``city`` right, ``broken`` untagged."""
    calls: Counter[str] = Counter()

    def script(context: list[int], turn: int) -> str:
        text = tokenizer.decode(context)
        if "2 plus 2" in text:
            calls["add"] += 1
            return "<think> 2+2 </think>\n<answer> 4 </answer>" if calls["add"] % 2 else "<answer> 5 </answer>"
        if "France" in text:
            return "<think> I know this. </think>\n<answer> Paris </answer>"
        return "just some words without tags"

    return ScriptedEngine(tokenizer, script)


def test_hand_counted_evaluation(tokenizer, data_file: Path, tmp_path: Path):
    out = tmp_path / "out"
    seen: list[tuple[int, int, float]] = []
    result = evaluate(
        config(engine=TransformersEngineConfig(batch_size=4)),
        "scripted",
        str(data_file),
        "none",
        samples=2,
        greedy=False,
        limit=None,
        out_dir=out,
        engine=scripted(tokenizer),
        progress=lambda done, total, work: seen.append((done, total, work)),
    )
    m = result.metrics
    # the total from the start, then as trajectories finish (and turn), to every turn done
    assert seen[0] == (0, 6, 0.0) and seen[-1] == (6, 6, 1.0) and {total for _, total, _ in seen} == {6}
    assert [done for done, _, _ in seen] == sorted(done for done, _, _ in seen)
    assert (m[OVERALL].questions, m[OVERALL].samples, m[OVERALL].k) == (3, 6, 2)
    assert m["calculator"].acc == 0.5 and m["calculator"].pass_at_k == 1.0
    assert m["nq"].acc == 0.5 and m["nq"].pass_at_k == 0.5  # city right twice, broken never
    assert m[OVERALL].acc == pytest.approx((0.5 + 1 + 0) / 3)
    assert m[OVERALL].format_error_rate == pytest.approx(1 / 3)  # only "broken" (both samples)
    assert m[OVERALL].tool_calls_total == 0
    adaptive = m[OVERALL].adaptive
    assert adaptive is not None and adaptive.call_rate_when_needed == 0.0
    assert result.template == "no_tools"
    # The files agree with what was returned, and a report can be built from them.
    saved = load_result(out)
    assert saved.metrics == m and saved.template == "no_tools"
    trajectories = load_trajectories(out)
    assert len(trajectories) == 6 and compute_metrics(to_records(trajectories)) == m
    assert "| calculator |" in (out / "results.md").read_text()
    assert "Sampled trajectories" in build_report(out, n_trajectories=3).read_text()


def test_the_work_share_counts_tokens_and_expects_what_the_started_trajectories_show():
    """Response tokens done over tokens expected: finished trajectories their own; running ones their tool's output
    (or the mean one while the tool runs) and one more turn of the mean turn, at least the finished mean; the ones
    not started the mean of what the started ones expect."""
    answered = Progressed(done=30, inserted=0, turns=1, written=30)  # answered at once
    searched = Progressed(done=150, inserted=0, turns=2, written=60)  # 30 written, 90 read, 30 written
    reading = Progressed(done=40, inserted=80, turns=1, written=40)  # its tool's 80 tokens wait for its next turn
    waiting = Progressed(done=20, inserted=0, turns=1, written=20)  # its tool still runs
    assert work_share([], [], 4) == 0.0  # nothing done yet: no pace
    assert work_share([answered], [waiting], 4) == 0.0  # no tool has answered yet: the next turn's size is unknown
    # per turn (30 + 60 + 40 + 20) / 5 = 30 written; per insertion (90 + 80) / 2 = 85; finished mean 90
    expected = [30, 150, max(40 + 80 + 30, 90), max(20 + 85 + 30, 90)]
    whole = sum(expected) + 2 * sum(expected) / 4  # two not started
    assert work_share([answered, searched], [reading, waiting], 6) == pytest.approx((30 + 150 + 40 + 20) / whole)
    assert work_share([answered, searched], [], 2) == 1.0
    # a tool's output is counted by the turn that reads it: no sooner than that turn returns
    assert Progressed.of(Trajectory(prompt_ids=[1], response_ids=[5] * 5, model_mask=[1, 1, 0, 0, 0]), 1) == (
        Progressed(done=2, inserted=3, turns=1, written=2)
    )
    assert Progressed.of(Trajectory(prompt_ids=[1], response_ids=[5] * 4, model_mask=[1, 1, 0, 1]), 2) == (
        Progressed(done=4, inserted=0, turns=2, written=3)
    )


def test_tiny_model_through_the_transformers_engine(tokenizer, tiny_model, data_file: Path, tmp_path: Path):
    from tapo.engines.hf import HFEngine

    cfg = config(max_new_tokens_per_turn=8, max_response_tokens=32, max_turns=0)
    result = evaluate(
        cfg, "tiny", str(data_file), "none", 1, True, 2, tmp_path / "tiny", engine=HFEngine(tiny_model, tokenizer)
    )
    overall = result.overall
    assert overall.questions == 2 and overall.samples == 2
    assert 0 < overall.model_tokens_mean <= 32
    assert overall.format_error_rate == 1.0  # a random model writes no protocol tags
    assert json.loads((tmp_path / "tiny" / "results.json").read_text())["metrics"]["overall"]["samples"] == 2


def test_ablation_writes_one_row_per_mode(tokenizer, data_file: Path, tmp_path: Path):
    results = evaluate_ablation(
        config(),
        "scripted",
        str(data_file),
        1,
        True,
        None,
        tmp_path / "abl",
        modes=["none"],
        engine=scripted(tokenizer),
    )
    assert [r.tools_mode for r in results] == ["none"]
    table = (tmp_path / "abl" / "ablation.md").read_text()
    assert "| tools |" in table and "| none |" in table
    assert (tmp_path / "abl" / "none" / "results.json").is_file()


def test_tool_modes_need_a_registry(tokenizer, data_file: Path, tmp_path: Path):
    from tapo.eval.runner import evaluate_examples

    with pytest.raises(ValueError, match="needs a tool registry"):
        evaluate_examples(config(), scripted(tokenizer), EXAMPLES, "search", EvalSetup(), "m", "d", tools=None)


@pytest.mark.parametrize("configured", ["base", "compact", "search_only", "no_tools"])
@pytest.mark.parametrize("mode", TOOL_MODES)
def test_each_mode_prompt_offers_exactly_its_tools(configured: str, mode: str):
    template = get_template(template_for_mode(configured, mode))
    assert template.tools == MODE_TOOLS[mode]
    assert ("Example:" in template.text) == (configured != "compact")


def test_unknown_template_for_a_mode_is_a_clear_error(tmp_path: Path):
    custom = tmp_path / "mine.txt"
    custom.write_text("Use <search> q </search> then answer in <answer> a </answer>.\n{question}")
    assert template_for_mode(str(custom), "search") == str(custom)
    with pytest.raises(ValueError, match="register a template named"):
        template_for_mode(str(custom), "code")


def test_bad_setups_and_data_are_clear_errors(tmp_path: Path):
    with pytest.raises(ValueError, match="identical samples"):
        EvalSetup(samples=4, greedy=True)
    with pytest.raises(FileNotFoundError, match="neither a data file nor a benchmark"):
        load_eval_data(str(tmp_path / "missing.jsonl"))
    cfg = TapoConfig()
    assert default_out_dir(cfg, "openai:http://h/v1#gpt", "data/x.jsonl", "all").name == "v1_gpt-x.jsonl-all"


def test_ablation_with_real_tools(tokenizer, tmp_path: Path):
    """All four modes with a real BM25 index and the real code sandbox: each mode allows exactly its tools."""
    from tapo.tools.search.bm25 import BM25Index

    corpus = [{"id": "1", "title": "France", "text": "Paris is the capital of France."}]
    corpus.append({"id": "2", "title": "Germany", "text": "Berlin is the capital of Germany."})
    BM25Index.build(corpus, tmp_path / "index")
    cfg = config(max_turns=2)
    cfg.tools.search.backend = BM25SearchConfig(index_dir=str(tmp_path / "index"))
    cfg.tools.search.topk = 1
    cfg.tools.search.cache.enabled = False
    script = ["<search> capital of France </search>", "<code>print(6 * 7)</code>", "<answer> Paris </answer>"]
    results = evaluate_ablation(
        cfg,
        "scripted",
        str(save_examples(EXAMPLES[1:2], tmp_path / "fr.jsonl")),
        1,
        True,
        None,
        tmp_path / "abl",
        engine=ScriptedEngine(tokenizer, script),
    )
    calls = {r.tools_mode: r.overall.tool_calls_mean for r in results}
    assert calls == {
        "all": {"search": 1.0, "code": 1.0},
        "search": {"search": 1.0, "code": 0.0},
        "code": {"search": 0.0, "code": 1.0},
        "none": {"search": 0.0, "code": 0.0},
    }
    assert [r.overall.tool_failure_rate for r in results] == [0.0, 0.0, 0.0, None]
    # Refused tool tags get the corrective message: environment text, so it costs a turn, not the format.
    assert [r.overall.acc for r in results] == [1.0, 1.0, 1.0, 1.0]
    assert [r.overall.format_error_rate for r in results] == [0.0, 0.0, 0.0, 0.0]
    assert all("My previous action is invalid" in r.trajectories[0].response_text for r in results[1:])
    turns = results[0].trajectories[0].turns
    assert "Paris is the capital of France" in turns[0].output and turns[1].output.strip() == "42"
    assert [t.action for t in results[3].trajectories[0].turns] == ["invalid", "invalid", "answer"]
    rows = [line for line in (tmp_path / "abl" / "ablation.md").read_text().splitlines() if line.startswith("|")]
    assert [row.split("|")[1].strip() for row in rows[2:]] == ["all", "search", "code", "none"]


def _cli_eval(args: list[str]):
    from typer.testing import CliRunner

    from tapo.cli.main import app

    return CliRunner().invoke(app, ["eval", *args])


def test_tapo_eval_with_a_checkpoint(tiny_checkpoint: str, data_file: Path, tmp_path: Path):
    pytest.importorskip("tapo.engines.factory", reason="engines.factory (build_engine) has not landed")
    out = tmp_path / "cli"
    args = ["-m", tiny_checkpoint, "-d", str(data_file), "--tools", "none", "-n", "2", "-o", str(out)]
    result = _cli_eval(
        [*args, "rollout.max_new_tokens_per_turn=8", "rollout.max_turns=0", "reward.overlong.enabled=false"]
    )
    assert result.exit_code == 0, result.output
    assert load_result(out).overall.samples == 2 and len(load_trajectories(out)) == 2


@pytest.mark.integration
@pytest.mark.slow
def test_smollm2_ablation_with_real_tools(tmp_path: Path, data_file: Path):
    """The real model, a real BM25 index and sandbox, all four modes through the CLI, one table."""
    pytest.importorskip("tapo.engines.factory", reason="engines.factory (build_engine) has not landed")
    from tapo.tools.search.bm25 import BM25Index

    BM25Index.build([{"id": "1", "title": "France", "text": "Paris is the capital of France."}], tmp_path / "index")
    out = tmp_path / "abl"
    overrides = [
        f"tools.search.backend.index_dir={tmp_path / 'index'}",
        "tools.search.cache.enabled=false",
        "rollout.max_new_tokens_per_turn=16",
        "rollout.max_response_tokens=160",
        "rollout.max_turns=1",
        "reward.overlong.enabled=false",
    ]
    result = _cli_eval(
        ["-m", "smollm2-135m-instruct", "-d", str(data_file), "-n", "1", "--ablate", "-o", str(out), *overrides]
    )
    assert result.exit_code == 0, result.output
    rows = [line for line in (out / "ablation.md").read_text().splitlines() if line.startswith("|")]
    assert [row.split("|")[1].strip() for row in rows[2:]] == list(TOOL_MODES)
    for mode in TOOL_MODES:
        saved = load_result(out / mode)
        assert saved.overall.samples == 1 and saved.template == template_for_mode("base", mode)
        assert all(0 < t.n_model_tokens <= 160 for t in load_trajectories(out / mode))


def test_vllm_without_the_extra_is_a_clear_error(tiny_checkpoint: str, data_file: Path):
    import importlib.util

    if importlib.util.find_spec("vllm") is not None:
        pytest.skip("vllm is installed")
    result = _cli_eval(["-m", tiny_checkpoint, "-d", str(data_file), "--tools", "none", "rollout.engine=vllm"])
    # stopped by the preflight, before the model loads, with the fix named
    assert result.exit_code == 2 and "needs vllm" in result.output and "make vllm" in result.output


def test_a_question_longer_than_the_context_is_cut_as_in_training(tokenizer, tmp_path: Path, caplog):
    """Issue 28: `tapo eval` on a 50 MB question passed 3.2 GB; training cuts the prompt to data.max_prompt_tokens."""
    long = Example(id="long", question="word " * 5000, data_source="nq", golds=["x"])
    data = save_examples([long, EXAMPLES[1]], tmp_path / "long.jsonl")
    seen: list[int] = []

    def script(context: list[int], turn: int) -> str:
        seen.append(len(context))
        return "<answer> x </answer>"

    cfg = config()
    cfg.data.max_prompt_tokens = 1000
    with caplog.at_level("WARNING", logger="tapo.eval.runner"):
        result = evaluate(
            cfg, "s", str(data), "none", 1, True, None, tmp_path / "out", ScriptedEngine(tokenizer, script)
        )
    assert max(seen) <= 1000 and result.metrics[OVERALL].questions == 2
    (line,) = [r.getMessage() for r in caplog.records if "max_prompt_tokens" in r.getMessage()]
    assert line.startswith("1 of 2 prompts are over data.max_prompt_tokens=1000: cut to their last 1000 tokens")
