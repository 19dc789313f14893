"""RewardFunction: format penalty, acc threshold, overlong shaping on model tokens, registry and custom scorers."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tapo.config.schema import RewardConfig
from tapo.data.schema import Example
from tapo.records import Trajectory
from tapo.rewards.compute import RewardFunction
from tapo.rewards.registry import RewardError, ScorerRegistry
from tapo.rewards.shaping import grpo_tool_reward, overlong_penalty, ppo_tool_reward

M, B = 2048, 1024


@pytest.fixture
def reward():
    function = RewardFunction(RewardConfig(), max_response_tokens=M)
    yield function
    function.close()


def test_correct_answer(reward):
    result = reward("<think>capital</think><answer>Paris</answer>", ["London", "Paris"], "nq", 10)
    assert (result.format_ok, result.score, result.penalty, result.total, result.acc) == (True, 1.0, 0.0, 1.0, True)
    assert (result.answer, result.scorer, result.format_error) == ("Paris", "em", "")


def test_broken_format_scores_the_penalty_even_when_right(reward):
    result = reward("<answer>Paris</answer> I am sure", ["Paris"], "nq", 10)
    assert (result.format_ok, result.score, result.acc) == (False, -1.0, False)
    assert result.answer == "Paris"
    assert result.format_error == "text after </answer>"


def test_total_adds_the_overlong_penalty(reward):
    result = reward("<answer>nope</answer>", ["Paris"], "nq", M - B // 2)
    assert result.penalty == pytest.approx(-0.5)
    assert result.total == pytest.approx(-0.5)
    broken = reward("<answer>nope", ["Paris"], "nq", M)
    assert broken.total == pytest.approx(-2.0)


@pytest.mark.parametrize(("threshold", "acc"), [(0.9, False), (0.5, True)])
def test_acc_is_score_above_threshold(threshold, acc):
    with RewardFunction(RewardConfig(acc_threshold=threshold, custom_scorers={"nq": "nq"}), M) as reward:
        result = reward("<answer>Parus</answer>", ["Paris"], "nq", 1)
    assert result.score == pytest.approx(0.8)
    assert result.acc is acc


@pytest.mark.parametrize(
    ("n_tokens", "penalty"),
    [(0, 0.0), (M - B, 0.0), (M - B + 256, -0.25), (M - B // 2, -0.5), (M, -1.0)],
)
def test_overlong_penalty(n_tokens, penalty):
    assert overlong_penalty(n_tokens, M, B, 1.0) == pytest.approx(penalty)
    assert overlong_penalty(n_tokens, M, B, 0.5) == pytest.approx(penalty * 0.5)


@given(st.integers(0, M), st.integers(1, M - 1), st.floats(0.0, 10.0))
def test_overlong_penalty_range(n_tokens, buffer, factor):
    assert -factor - 1e-9 <= overlong_penalty(n_tokens, M, buffer, factor) <= 0.0


def test_overlong_bad_input():
    with pytest.raises(ValueError, match="n_model_tokens"):
        overlong_penalty(-1, M, B, 1.0)
    with pytest.raises(RewardError, match=r"reward\.overlong\.buffer=1024 must be below"):
        RewardFunction(RewardConfig(), max_response_tokens=512)
    with RewardFunction(RewardConfig(overlong={"enabled": False}), max_response_tokens=512) as reward:
        assert reward("<answer>x</answer>", ["x"], "nq", 512).penalty == 0.0


def _example(golds: list[str], data_source: str) -> Example:
    return Example(id="q", question="q?", data_source=data_source, golds=golds)


def test_score_trajectories_counts_model_tokens_only(reward):
    """A long tool output (mask 0) must not make the model's own short response look overlong."""
    traj = Trajectory(
        prompt_ids=[1, 2],
        response_ids=list(range(3000)),
        model_mask=[1] * 100 + [0] * 2800 + [1] * 100,
        response_text="<search>q</search><response>" + "doc " * 2000 + "</response><answer>1,234</answer>",
        example=_example(["1234"], "calculator"),
    )
    reward.score_trajectories([traj])
    assert traj.reward is not None
    assert (traj.reward.score, traj.reward.penalty, traj.reward.acc) == (1.0, 0.0, True)
    traj.example = None
    with pytest.raises(RewardError, match="trajectory has no example"):
        reward.score_trajectories([traj])


def test_corrective_messages_do_not_break_the_format(reward):
    """The environment's corrective message names the tags; only the model's own text is format-checked."""
    from tapo.protocol import corrective_message
    from tapo.records import Turn

    message = corrective_message(frozenset({"search", "code"}))
    assert "<answer>" in message  # the message really mentions a complete tag pair
    traj = Trajectory(
        prompt_ids=[1],
        response_text=f"<think> hm </think> no action{message}<think> ok </think>\n<answer> 7 </answer>",
        turns=[Turn("invalid", "no action", message, ok=False), Turn("answer", " 7 ")],
        example=_example(["7"], "calculator"),
    )
    reward.score_trajectories([traj])
    assert traj.reward is not None and traj.reward.format_ok and traj.reward.acc
    assert not reward(traj.response_text, ["7"], "calculator", 10).format_ok  # the raw text would fail


@pytest.mark.parametrize(
    ("source", "scorer"),
    [
        ("nq", "em"),
        ("2WikiMultiHopQA", "em"),
        ("MATH-500", "math"),
        ("aime_2024", "math"),
        ("DAPO-Math-17k", "math"),
        ("gsm8k", "math"),
        ("calculator", "calculator"),
        ("complex", "complex"),
        ("tapo_mini", "auto"),
        ("tapo_mini/multi_hop", "auto"),
        ("", "exact"),
        ("default", "exact"),
        ("aime_2025", "math"),
        ("aime_2024_I", "math"),  # TAPO's router takes every name that starts with aime
        ("AIME 2025 II", "math"),
    ],
)
def test_registry_by_source(source, scorer):
    registry = ScorerRegistry(RewardConfig())
    assert registry.resolve(source)[0] == scorer


@pytest.mark.parametrize(
    ("source", "scorer"),
    [
        ("default", "exact"),
        ("gsm8k", "exact"),
        ("dapo_math", "exact"),
        ("deep_math", "exact"),
        ("aime2024", "exact"),
        ("aime_2025", "exact"),
        ("AIME-25", "exact"),
        ("aime_2024_I", "exact"),
        ("aimeX", "exact"),
        ("nq", "nq"),
        ("calculator", "calculator"),
        ("complex", "tapo_complex"),
        ("hotpotqa", "em"),  # unknown to TAPO's scorer: the reporting scorer stays
        ("math500", "math"),
        ("tapo_mini", "auto"),
    ],
)
def test_tapo_preset_is_the_original_scorer_per_source(source, scorer):
    registry = ScorerRegistry(RewardConfig(preset="tapo"))
    assert registry.resolve(source)[0] == scorer


def test_presets_score_the_same_answer_differently():
    """The point of the switch: TAPO pays a substring hit on nq and misses '$18' on gsm8k; reporting does not."""
    answer = "<answer>Paris, France</answer>"
    with RewardFunction(RewardConfig(preset="tapo"), M) as tapo, RewardFunction(RewardConfig(), M) as report:
        assert (tapo(answer, ["Paris"], "nq", 1).acc, report(answer, ["Paris"], "nq", 1).acc) == (True, False)
        dollars = "<answer>$18</answer>"
        assert (tapo(dollars, ["18"], "gsm8k", 1).acc, report(dollars, ["18"], "gsm8k", 1).acc) == (False, True)


def test_presets_read_complex_answers_differently():
    """Issue 29: TAPO's complex rule glues every digit of the answer; the default preset reads one number."""
    with RewardFunction(RewardConfig(preset="tapo"), M) as tapo, RewardFunction(RewardConfig(), M) as report:
        for answer, gold, expected in (("between 1 and 6", "16", (True, False)), ("1/2", "0.5", (False, True))):
            text = f"<answer>{answer}</answer>"
            assert (tapo(text, [gold], "complex", 1).acc, report(text, [gold], "complex", 1).acc) == expected


def test_a_number_suffix_falls_back_only_to_a_known_family():
    with pytest.raises(RewardError, match="squad2"):
        ScorerRegistry(RewardConfig()).resolve("squad2")


@pytest.mark.parametrize("source", ["gsm8k_main", "dapo", "deep", "aim", "complex_qa", "nq_open"])
def test_a_name_no_scorer_takes_is_one_line_before_scoring(source):
    """TAPO's router raises NotImplementedError mid-run on these; here the check fails up front, in one line."""
    with RewardFunction(RewardConfig(preset="tapo"), M) as reward, pytest.raises(RewardError) as error:
        reward.check_sources(["gsm8k", source])
    assert f"no scorer for data_source {source!r}" in str(error.value) and "\n" not in str(error.value)


def test_unknown_source_fails_fast_listing_known_ones(reward):
    with pytest.raises(RewardError, match=r"no scorer for data_source 'squad'; known sources: .*bamboogle.*triviaqa"):
        reward("<answer>x</answer>", ["x"], "squad", 1)
    with pytest.raises(RewardError, match="squad"):
        reward.check_sources(["nq", "squad"])
    with pytest.raises(RewardError, match="non-empty list"):
        reward("<answer>x</answer>", [], "nq", 1)


def test_default_scorer_is_configurable():
    with RewardFunction(RewardConfig(default_scorer="f1"), M) as reward:
        assert reward("<answer>eiffel tower paris</answer>", ["the eiffel tower"], "", 1).score == pytest.approx(0.8)


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    (tmp_path / "my_scorers.py").write_text(
        "def prefix(prediction, gold):\n    return float(prediction.lower().startswith(gold.lower()))\n\n"
        "def broken(prediction, gold):\n    return 2.0\n\nNOT_CALLABLE = 3\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))


def test_custom_scorer_from_config(user_module):
    config = RewardConfig(custom_scorers={"squad": "my_scorers:prefix", "nq": "f1"})
    with RewardFunction(config, M) as reward:
        result = reward("<answer>Paris, France</answer>", ["paris"], "squad", 1)
        assert (result.score, result.scorer) == (1.0, "my_scorers:prefix")
        assert reward("<answer>eiffel tower</answer>", ["the eiffel tower"], "nq", 1).scorer == "f1"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("my_scorers", "built-in name or 'module:function'"),
        ("my_scorers:missing", "cannot load custom scorer"),
        ("no_such_module_xyz:f", "cannot load custom scorer"),
        ("my_scorers:NOT_CALLABLE", "is not callable"),
    ],
)
def test_custom_scorer_errors(user_module, spec, message):
    with pytest.raises(RewardError, match=message):
        RewardFunction(RewardConfig(custom_scorers={"squad": spec}), M)


def test_custom_scorer_out_of_range_is_an_error(user_module):
    config = RewardConfig(custom_scorers={"squad": "my_scorers:broken"})
    with (
        RewardFunction(config, M) as reward,
        pytest.raises(RewardError, match=r"returned 2\.0; a score must be a number in \[0, 1\]"),
    ):
        reward("<answer>x</answer>", ["x"], "squad", 1)


@pytest.mark.parametrize(
    ("calls", "weight", "half_calls", "bonus"),
    [
        (0, 0.1, 1.0, 0.1),  # no call: the whole weight
        (1, 0.1, 1.0, 0.05),  # m = c: cos(pi/3) = 1/2
        (3, 1.0, 3.0, 0.5),  # m = c again
        (1, 1.0, 2.0, 2**0.5 / 2),  # cos(pi/4)
        (2, 1.0, 1.0, (5**0.5 - 1) / 4),  # cos(2pi/5)
        (5, 0.0, 1.0, 0.0),  # weight 0: no bonus at all
    ],
)
def test_tool_bonus_by_hand(calls, weight, half_calls, bonus):
    assert weight * ppo_tool_reward(calls, half_calls) == pytest.approx(bonus)


@given(st.integers(0, 1000), st.floats(0.0, 1.0), st.floats(0.01, 100.0))
def test_tool_bonus_shrinks_with_calls_and_stays_in_range(calls, weight, half_calls):
    bonus = weight * ppo_tool_reward(calls, half_calls)
    assert 0.0 <= bonus <= weight
    assert weight * ppo_tool_reward(calls + 1, half_calls) <= bonus


def test_tool_bonus_bad_input():
    with pytest.raises(ValueError, match="calls must be >= 0"):
        ppo_tool_reward(-1, 1.0)
    with pytest.raises(ValueError, match="half_calls must be > 0"):
        ppo_tool_reward(1, 0.0)
    with pytest.raises(ValueError, match="optimal calls must be >= 0"):
        grpo_tool_reward(1, -1, 1.0)


def test_tool_cost_is_off_by_default_so_the_reward_stays_tapos(reward):
    assert not RewardConfig().tool_cost.enabled and RewardConfig().tool_cost.form == "additive"
    for calls in (0, 3):
        result = reward("<answer>Paris</answer>", ["Paris"], "nq", 10, calls)
        assert (result.total, result.tool_bonus, result.signal) == (1.0, 0.0, 1.0)


def test_tool_cost_pays_only_right_answers_and_fewer_calls_more():
    config = RewardConfig(tool_cost={"enabled": True, "weight": 0.1, "half_calls": 1.0})
    with RewardFunction(config, M) as reward:
        none, one = (reward("<answer>7</answer>", ["7"], "calculator", 10, calls) for calls in (0, 1))
        wrong = reward("<answer>8</answer>", ["7"], "calculator", 10, 0)
        broken = reward("<answer>7</answer> sure", ["7"], "calculator", 10, 0)
        long = reward("<answer>7</answer>", ["7"], "calculator", M - B // 2, 0)
    assert (none.score, none.tool_bonus, none.total) == (1.0, pytest.approx(0.1), pytest.approx(1.1))
    assert (one.tool_bonus, one.total) == (pytest.approx(0.05), pytest.approx(1.05))
    assert (wrong.tool_bonus, wrong.total) == (0.0, 0.0)  # a cheap wrong answer earns nothing
    assert (broken.tool_bonus, broken.total) == (0.0, -1.0)
    assert long.total == pytest.approx(1.0 - 0.5 + 0.1)  # added beside the overlong penalty
    assert none.total > one.total > wrong.total


def test_tool_cost_counts_the_calls_the_rollout_ran():
    """A refused tag (an invalid turn) is no call; the calls come from the trajectory's turns."""
    from tapo.records import Turn

    config = RewardConfig(tool_cost={"enabled": True, "weight": 0.1, "half_calls": 1.0})
    text = "<code>print(3+4)</code><response>7</response><answer>7</answer>"
    runs = {
        "ran": [Turn("code", "print(3+4)", "7"), Turn("answer", "7")],
        "refused": [Turn("invalid", "print(3+4)", "", ok=False), Turn("answer", "7")],
    }
    trajs = {
        name: Trajectory(prompt_ids=[1], response_text=text, turns=turns, example=_example(["7"], "calculator"))
        for name, turns in runs.items()
    }
    with RewardFunction(config, M) as reward:
        reward.score_trajectories(list(trajs.values()))
    assert trajs["ran"].scored.tool_bonus == pytest.approx(0.05)
    assert trajs["refused"].scored.tool_bonus == pytest.approx(0.1)
    assert trajs["ran"].to_row()["reward"]["tool_bonus"] == pytest.approx(0.05)  # recorded for the reports
    assert Trajectory.from_row(trajs["ran"].to_row()).scored.tool_bonus == pytest.approx(0.05)


def test_dynamic_sampling_keeps_right_answers_that_differ_in_calls_only_with_tool_cost():
    import torch

    from tapo.algo.filtering import constant_groups

    def signals(config: RewardConfig) -> torch.Tensor:
        with RewardFunction(config, M) as reward:
            group = [reward("<answer>7</answer>", ["7"], "calculator", 10, calls) for calls in (0, 1, 1, 2)]
        return torch.tensor([[r.signal for r in group]])

    assert constant_groups(signals(RewardConfig())).tolist() == [True]  # TAPO: four right answers teach nothing
    assert constant_groups(signals(RewardConfig(tool_cost={"enabled": True}))).tolist() == [False]


COS_PI_6, COS_PI_4, COS_2PI_5 = 3**0.5 / 2, 2**0.5 / 2, (5**0.5 - 1) / 4


@pytest.mark.parametrize(
    ("calls", "half_calls", "alpha", "right", "total"),
    [
        # OTC-PO (arXiv 2504.14870): r = alpha * cos(m pi / (2m + c)) * r_answer; its defaults alpha 1, c 4
        (0, None, None, True, 1.0),
        (1, None, None, True, COS_PI_6),  # cos(pi/6)
        (2, None, None, True, COS_PI_4),  # cos(2pi/8)
        (4, None, None, True, 0.5),  # m = c: cos(pi/3)
        (8, None, None, True, COS_2PI_5),  # cos(8pi/20)
        (0, None, None, False, 0.0),  # a wrong answer: 0 whatever its calls
        (3, None, None, False, 0.0),
        (1, 1.0, None, True, 0.5),  # c = 1: cos(pi/3)
        (2, 1.0, None, True, COS_2PI_5),  # cos(2pi/5)
        (2, 2.0, None, True, 0.5),  # m = c
        (0, None, 0.5, True, 0.5),  # alpha 0.5
        (1, None, 0.5, True, COS_PI_6 / 2),
        (4, 1.0, 0.5, False, 0.0),
    ],
)
def test_otc_form_is_otc_pos_multiplicative_reward(calls, half_calls, alpha, right, total):
    cost = {"enabled": True, "form": "otc", "half_calls": half_calls, "weight": alpha}
    with RewardFunction(RewardConfig(tool_cost=cost), M) as reward:
        result = reward(f"<answer>{7 if right else 8}</answer>", ["7"], "calculator", 10, calls)
    assert result.total == pytest.approx(total)
    assert result.tool_bonus == pytest.approx(total - 1.0 if right else 0.0)  # the term: what it changed
    assert result.score == float(right) and result.acc == right  # score and acc stay the scorer's


@pytest.mark.parametrize(
    ("calls", "optimal", "half_calls", "r_tool"),
    [
        # OTC-GRPO: f = 2nm / (m + n), r_tool = sin(f pi / (2n)); n = 0: the cos form
        (2, 2, 4.0, 1.0),  # m = n
        (3, 2, 4.0, 0.9510565162951535),  # f = 12/5, sin(0.6 pi) = sin(72 deg)
        (6, 2, 4.0, COS_PI_4),  # f = 3, sin(3pi/4)
        (1, 1, 4.0, 1.0),
        (3, 1, 4.0, COS_PI_4),  # f = 3/2, sin(3pi/4)
        (1, 2, 4.0, COS_PI_6),  # f = 4/3, sin(pi/3): fewer calls than n
        (0, 0, 4.0, 1.0),
        (1, 0, 4.0, COS_PI_6),  # n = 0: cos(pi/6)
        (4, 0, 4.0, 0.5),
    ],
)
def test_grpo_tool_reward_by_hand(calls, optimal, half_calls, r_tool):
    assert grpo_tool_reward(calls, optimal, half_calls) == pytest.approx(r_tool)


def _calls(calls: int, answer: str, prompt: str = "q") -> Trajectory:
    from tapo.records import Turn

    text = "<search>x</search><response>y</response>" * calls + f"<answer>{answer}</answer>"
    turns = [Turn("search", "x", "y") for _ in range(calls)] + [Turn("answer", answer)]
    example = Example(id=prompt, question="q?", golds=["7"], data_source="calculator")
    return Trajectory(prompt_ids=[1], response_text=text, turns=turns, example=example)


def test_otc_grpo_takes_n_from_the_fewest_calls_among_the_groups_right_answers():
    """Prompt a: right answers with 1, 2 and 3 calls and a wrong one with none, so n = 1: totals 1,
    sin(pi/3) (f = 4/3) and sin(3pi/4) (f = 3/2), and 0. Prompt b's only right answer has 3 calls: n = 3, total 1."""
    trajs = [_calls(1, "7", "a"), _calls(2, "7", "a"), _calls(3, "7", "a"), _calls(0, "8", "a"), _calls(3, "7", "b")]
    cost = {"enabled": True, "form": "otc", "optimal_calls": "group"}
    with RewardFunction(RewardConfig(tool_cost=cost), M) as reward:
        reward.score_trajectories(trajs)
    totals = [t.scored.total for t in trajs]
    assert totals == pytest.approx([1.0, COS_PI_6, COS_PI_4, 0.0, 1.0])


def test_the_two_forms_rank_a_mixed_group_differently():
    """The point of the switch: in a group of two right answers (0 and 2 calls) and two wrong ones, the additive
    bonus moves the right answers by 0.1 and 0.031 on top of 1; OTC-PO's reward pays 1 and 0.71, so the gap
    between the two right answers is 0.069 against 0.29, about 4x (GRPO advantages then differ too)."""
    group = [_calls(0, "7"), _calls(2, "7"), _calls(0, "8"), _calls(2, "8")]
    totals = {}
    for form in ("additive", "otc"):
        with RewardFunction(RewardConfig(tool_cost={"enabled": True, "form": form}), M) as reward:
            reward.score_trajectories(group)
        totals[form] = [t.scored.total for t in group]
    assert totals["additive"] == pytest.approx([1.1, 1.0 + 0.1 * COS_2PI_5, 0.0, 0.0])
    assert totals["otc"] == pytest.approx([1.0, COS_PI_4, 0.0, 0.0])
