"""The main job's parts: oracle plans → demonstrations through real tools, profiles, resumable stages."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import get_args

import pytest
from rich.console import Console

from tapo.config import ConfigError, load_config
from tapo.data.io import load_examples
from tapo.data.mini import MiniSizes, build_mini
from tapo.data.mini.oracle_plan import OraclePlan, SearchStep
from tapo.io.event_loop import EventLoopThread
from tapo.pipeline.arms import ARMS_FILE, BASE, SFT, ArmsError, load_arms
from tapo.pipeline.demos import DemoBuilder
from tapo.pipeline.job import MainJob
from tapo.pipeline.profiles import Baseline, load_profile
from tapo.pipeline.stages import Stage, StageRunner
from tapo.pipeline.summary import NAMED_ARMS
from tapo.prompts.templates import allowed_tools
from tapo.protocol import parse_action
from tapo.rewards.compute import RewardFunction
from tapo.rollout.oracle import plan_turns
from tapo.tools.catalog import build_tools


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
        plan = OraclePlan.of(example)
        assert plan is not None and len(turns) == len(plan.steps) + 1
        for text, tool in zip(turns, plan.tools, strict=False):
            action = parse_action(text)
            assert action is not None and action.kind == tool
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
        plan = OraclePlan.of(demo.example)
        assert plan is not None and [t.action for t in demo.turns] == [*plan.tools, "answer"]
        env = tokenizer.decode([i for i, m in zip(demo.response_ids, demo.model_mask, strict=True) if m == 0])
        assert env.count("<response>") == len(plan.steps)
        for step, turn in zip(plan.steps, demo.turns, strict=False):
            if isinstance(step, SearchStep):
                assert step.value in turn.output  # the fact really came from the index
            else:
                assert turn.output == step.output  # the code really ran in the sandbox


def _replay(examples, tokenizer, config, stats):
    with RewardFunction(config.reward, config.rollout.max_response_tokens) as reward, EventLoopThread() as loop:
        tools = build_tools(config.tools)
        try:
            builder = DemoBuilder(tokenizer, tools, config.rollout, reward, config.data.template, loop=loop)
            return builder.build(examples, stats)
        finally:
            loop.run(tools.aclose())


def test_every_oracle_plan_fits_each_profiles_caps(tmp_path_factory, tokenizer):
    """Every question of every split (search_code included) is answerable within the profile's turn and token caps:
    its oracle plan, replayed through the real BM25 index and the real sandbox with SmolLM2's tokenizer, makes every
    planned call, finds every fact and ends with the gold answer under the scorer. Profiles with the same data and
    rollout settings are replayed once."""
    replayed: dict[str, dict[str, int]] = {}
    for name in ("default", "long"):
        profile = load_profile(name)
        sizes = MiniSizes(**profile.data.model_dump())
        key = repr((profile.seed, sizes, profile.common))
        if key not in replayed:
            out = tmp_path_factory.mktemp(f"mini-{name}")
            build_mini(out, seed=profile.seed, sizes=sizes)
            examples = [e for split in ("train", "validation", "test") for e in load_examples(out / f"{split}.jsonl")]
            config = load_config(
                None, [f"tools.search.backend.index_dir={out / 'index'}", "tools.search.cache.enabled=false",
                       *profile.common],
            )  # fmt: skip
            stats: dict[str, int] = {}
            demos = _replay(examples, tokenizer, config, stats)
            kinds = Counter(demo.example.meta["kind"] for demo in demos)
            assert kinds == Counter(e.meta["kind"] for e in examples), (name, kinds)
            replayed[key] = stats | {"questions": len(examples)}
        stats = replayed[key]
        assert stats == {"no_plan": 0, "kept": stats["questions"], "questions": stats["questions"]}, (name, stats)


def test_a_plan_cut_by_the_turn_cap_is_over_budget(mini, tokenizer):
    """A turn cut short gets a corrective message instead of its call, and the scripted answer can still be right:
    the builder must see that the plan did not run, not keep the trajectory because the answer scored."""
    cap = 34  # tokens: code turns are longer, their answer turns fit (chosen below)

    def tokens(text: str) -> int:
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])

    examples = []
    for example in load_examples(mini / "train.jsonl"):
        turns = plan_turns(example, allowed_tools("minimal"))
        if example.meta["kind"] == "code" and turns and tokens(turns[0]) > cap >= tokens(turns[1]):
            examples.append(example)
    assert examples
    config = load_config(
        None,
        [f"tools.search.backend.index_dir={mini / 'index'}", "data.template=minimal",
         f"rollout.max_new_tokens_per_turn={cap}"],
    )  # fmt: skip
    stats: dict[str, int] = {}
    assert _replay(examples, tokenizer, config, stats) == []
    assert stats == {"no_plan": 0, "over_budget": len(examples), "kept": 0}


def test_profiles_validate(tmp_path):
    assert load_profile("default").name == "default"
    with pytest.raises(ConfigError, match="known profiles: default, long"):
        load_profile("nope")
    bad = tmp_path / "bad.yaml"
    for wrong in ("0", "most"):
        bad.write_text(f"name: x\ndemos: {wrong}\n")
        with pytest.raises(ConfigError, match=r"demos: .*a number of training questions \(1 or more\) or `all`"):
            load_profile(str(bad))
    for name in ("default", "long"):
        profile = load_profile(name)
        load_config(None, [*profile.common, *profile.sft, *profile.rl])
        base = load_config(None, [*profile.common, *profile.base_eval])  # the starting model's shorter cap
        RewardFunction(base.reward, base.rollout.max_response_tokens).close()  # its overlong buffer must fit


def test_demos_all_or_a_count_at_or_above_the_split_takes_every_training_question(tmp_path):
    """A stronger warm start: every training question replayed as a demonstration (the job prices and slices by
    ``demo_questions``)."""
    from tapo.pipeline.job import MainJob

    every = tmp_path / "every.yaml"
    every.write_text("name: every\ndemos: all\ndata: {train: 120, validation: 20, test: 20}\n")
    profile = load_profile(str(every))
    assert profile.demos == "all" and profile.demo_questions() == 120
    assert profile.model_copy(update={"demos": 5000}).demo_questions() == 120
    assert profile.model_copy(update={"demos": 40}).demo_questions() == 40
    job = MainJob(profile, tmp_path / "job", Console(file=open(tmp_path / "log.txt", "w")))  # noqa: SIM115
    job.write_config()
    assert job.planned_work()[1] == 120 * load_config(job.config_file, profile.sft).sft.epochs


def test_long_profile_compares_tapo_with_the_tool_cost_arm(tmp_path):
    """The long profile runs TAPO + tool cost as its own arm; the reward of every other arm stays TAPO's. It runs TAPO
    on three seeds (issue 32: its goals about RL are decided on all of them)."""
    from tapo.pipeline.job import MainJob

    job = MainJob(load_profile("long"), tmp_path / "job", Console(file=open(tmp_path / "log.txt", "w")))  # noqa: SIM115
    job.write_config()
    arms = {arm.name: arm.overrides for arm in job.arms()}
    assert set(arms) == {"tapo", "tapo-seed1", "tapo-seed2", "dapo-no-tools", "tapo-no-mask", "tapo-tool-cost"}
    for name, extra in arms.items():
        config = load_config(job.config_file, [*job.profile.rl, *extra])
        assert config.reward.tool_cost.enabled is (name == "tapo-tool-cost"), name
    assert "tapo-tool-cost" not in {arm.name for arm in MainJob(load_profile("default"), tmp_path, job.console).arms()}


def test_every_arm_the_summary_names_is_one_the_job_runs(tmp_path):
    """The goals and comparisons name arms (``NAMED_ARMS``): with every baseline on, the job must run each of them
    under that name and title, or its goals would drop out of summary.md without a word."""
    profile = load_profile("long").model_copy(update={"baselines": list(get_args(Baseline))})
    job = MainJob(profile, tmp_path / "job", Console(file=open(tmp_path / "log.txt", "w")))  # noqa: SIM115
    job.write_config()
    run = {arm.name: arm.title for arm in (BASE, SFT, *job.arms())}
    assert {arm.name: arm.title for arm in NAMED_ARMS}.items() <= run.items()
    stages = {stage.name for stage in job.stages()}
    assert all(f"eval-{arm.name}" in stages for arm in NAMED_ARMS)
    assert load_arms(job.root) == job.arms()  # what `tapo report` rebuilds the summary from
    (job.root / ARMS_FILE).write_text('[{"name": "tapo"}]')
    with pytest.raises(ArmsError, match=r"arms.json: not a list of arms \(name, title, tools, overrides\)"):
        load_arms(job.root)


def test_profile_seeds_add_tapo_arms_that_differ_only_in_their_seed(tmp_path):
    """``seeds: 3`` runs TAPO three times from the same warm start: the extra arms change run.seed and nothing else."""
    from tapo.pipeline.job import MainJob

    profile = load_profile("default").model_copy(update={"seeds": 3, "seed": 5})
    job = MainJob(profile, tmp_path / "job", Console(file=open(tmp_path / "log.txt", "w")))  # noqa: SIM115
    job.write_config()
    arms = {arm.name: arm.overrides for arm in job.arms()}
    assert list(arms) == ["tapo", "tapo-seed1", "tapo-seed2"]
    configs = {name: load_config(job.config_file, [*profile.rl, *extra]) for name, extra in arms.items()}
    assert [c.run.seed for c in configs.values()] == [5, 6, 7]
    reference = configs["tapo"].model_dump(exclude={"run"})
    assert all(c.model_dump(exclude={"run"}) == reference for c in configs.values())
    assert {s.name for s in job.stages()} >= {"tapo-seed2", "eval-tapo-seed2"}


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


def test_a_collecting_stage_reruns_when_a_stage_before_it_ran(tmp_path):
    """A seed or baseline added to a finished job runs, and the report that collects every stage is redone; a
    rerun with nothing new skips the report too."""
    calls: list[str] = []
    state = tmp_path / "state.json"
    console = Console(file=open(tmp_path / "log.txt", "w"))  # noqa: SIM115

    def stages(*names: str) -> list[Stage]:
        work = [Stage(n, n, lambda n=n: calls.append(n)) for n in names]
        return [*work, Stage("report", "report", lambda: calls.append("report"), collects=True)]

    StageRunner(state, console).run(stages("a"))
    StageRunner(state, console).run(stages("a"))
    StageRunner(state, console).run(stages("a", "seed1"))
    assert calls == ["a", "report", "seed1", "report"]
