"""The main job's parts: oracle plans → demonstrations through real tools, profiles, resumable stages."""

from __future__ import annotations

from pathlib import Path

import pytest
from rich.console import Console

from tapo.config import ConfigError, load_config
from tapo.data.io import load_examples
from tapo.data.mini import MiniSizes, build_mini
from tapo.pipeline.demos import DemoBuilder, plan_turns
from tapo.pipeline.job import MainJob
from tapo.pipeline.profiles import load_profile
from tapo.pipeline.stages import Stage, StageRunner
from tapo.prompts.templates import allowed_tools
from tapo.protocol import parse_action
from tapo.rewards.compute import RewardFunction
from tapo.tools.registry import build_tools


@pytest.fixture(scope="module")
def mini(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("mini")
    build_mini(out, seed=3, sizes=MiniSizes(train=60, validation=20, test=20))
    return out


def test_plan_turns_follow_the_protocol(mini):
    allowed = allowed_tools("compact")
    for example in load_examples(mini / "train.jsonl"):
        turns = plan_turns(example, allowed)
        assert turns is not None
        plan = example.meta["plan"]
        assert len(turns) == len(plan) + 1
        for text, step in zip(turns, plan, strict=False):
            action = parse_action(text)
            assert action is not None and action.kind == step["tool"]
        final = parse_action(turns[-1])
        assert final is not None and final.kind == "answer" and final.content.strip() == example.meta["answer"]


def test_plan_needing_a_missing_tool_is_skipped(mini):
    examples = [e for e in load_examples(mini / "train.jsonl") if "code" in e.meta["needs"]]
    assert examples
    assert all(plan_turns(e, allowed_tools("compact_search_only")) is None for e in examples)


def test_demonstrations_replay_plans_through_real_tools(mini, tokenizer):
    config = load_config(
        None,
        [f"tools.search.backend.index_dir={mini / 'index'}", "tools.search.topk=1", "tools.search.cache.enabled=false"],
    )
    examples = load_examples(mini / "train.jsonl")[:24]
    stats: dict[str, int] = {}
    with RewardFunction(config.reward, config.rollout.max_response_tokens) as reward:
        builder = DemoBuilder(tokenizer, build_tools(config.tools), config.rollout, reward, "compact", batch_size=10)
        demos = builder.build(examples, stats)
    assert stats["kept"] == len(demos) >= 20
    for demo in demos:
        assert demo.reward is not None and demo.reward.acc
        plan = demo.example.meta["plan"]
        assert [t.action for t in demo.turns] == [s["tool"] for s in plan] + ["answer"]
        env = tokenizer.decode([i for i, m in zip(demo.response_ids, demo.loss_mask, strict=True) if m == 0])
        assert env.count("<response>") == len(plan)
        for step, turn in zip(plan, demo.turns, strict=False):
            if step["tool"] == "search":
                assert step["value"] in turn.output  # the fact really came from the index
            else:
                assert turn.output == step["output"]  # the code really ran in the sandbox


def test_profiles_validate(tmp_path):
    assert load_profile("default").name == "default"
    with pytest.raises(ConfigError, match="known profiles: default, long"):
        load_profile("nope")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\ndemos: 0\n")
    with pytest.raises(ConfigError, match="demos"):
        load_profile(str(bad))
    for name in ("default", "long"):
        profile = load_profile(name)
        load_config(None, [*profile.common, *profile.sft, *profile.rl])


@pytest.mark.parametrize("engine", ["transformers", "vllm"])
def test_profile_engine_is_every_stage_rollout_engine(tmp_path, engine):
    """The engine goes last into the shared config, so it combines with what the profiles' overrides set."""
    for name in ("default", "long"):
        profile = load_profile(name).model_copy(update={"engine": engine})
        job = MainJob(profile, tmp_path / name, Console(file=open(tmp_path / "log.txt", "w")))  # noqa: SIM115
        job.write_config()
        config = load_config(job.config_file, [*profile.rl])
        assert config.rollout.engine.kind == engine


def test_stage_runner_skips_finished_stages_and_retries_failed_ones(tmp_path):
    calls: list[str] = []

    def boom() -> None:
        calls.append("b")
        raise RuntimeError("interrupted")

    state = tmp_path / "state.json"
    console = Console(file=open(tmp_path / "log.txt", "w"))  # noqa: SIM115
    with pytest.raises(RuntimeError):
        StageRunner(state, console).run([Stage("a", "A", lambda: calls.append("a")), Stage("b", "B", boom)])
    StageRunner(state, console).run(
        [Stage("a", "A", lambda: calls.append("a")), Stage("b", "B", lambda: calls.append("B"))]
    )
    assert calls == ["a", "b", "B"]
