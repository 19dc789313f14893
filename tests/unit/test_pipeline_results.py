"""The main job's summary: question counts and 95 % intervals on every accuracy, paired differences, and goals
decided by their intervals (the +12.5 points on 40 questions that summary.md once ticked is inside the noise)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from pipeline_run import ARMS, QUESTIONS, TITLES, build_pipeline_run, eval_result, question, tool_trajectory
from tapo.eval.result_dir import load_trajectories
from tapo.io.atomic import read_jsonl, write_jsonl
from tapo.pipeline.arms import TAPO, seed_of
from tapo.pipeline.summary import KINDS, load_model, seed_spread, write_results

INTERVAL = r"\d+\.\d \[\d+\.\d, \d+\.\d\]"


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    return build_pipeline_run(tmp_path_factory.mktemp("job"))


def test_every_accuracy_has_its_count_and_interval(run: Path):
    summary = json.loads((run / "summary.json").read_text())
    main, by_kind, plans, paired = summary["tables"]
    assert [row[0] for row in main["rows"]] == list(TITLES.values())
    for row in main["rows"]:
        assert row[1] == "40" and re.fullmatch(INTERVAL, row[2]), row
    assert main["rows"][2][2] == "35.0 [22.1, 50.5]"  # 14 of 40, Wilson
    assert "40 questions" in main["caption"]
    assert by_kind["headers"][1:] == [f"{k} (n=8)" for k in ("single_hop", "multi_hop", "code", "search_code")] + [
        "no_tool (n=8)"
    ]
    assert all(re.fullmatch(INTERVAL, cell) for row in by_kind["rows"] for cell in row[1:])
    # the starting model calls nothing: it follows only the no-tool plans (8 of 8); the others call as planned
    assert plans["rows"][0][1:] == ["0.0 [0.0, 32.4]"] * 4 + ["100.0 [67.6, 100.0]"]
    assert all(cell == "100.0 [67.6, 100.0]" for row in plans["rows"][1:] for cell in row[1:])
    assert paired["rows"][1][:2] == ["TAPO (RL on the warm start) − warm start (SFT)", "40"]
    assert paired["rows"][1][2].startswith("+12.5 [+")
    assert summary["labels"]["eval/tapo"] == "TAPO (RL on the warm start)" and summary["labels"]["sft"]


def test_goals_are_decided_by_their_intervals(run: Path):
    text = (run / "summary.md").read_text()
    goals = {g["goal"]: g["verdict"] for g in json.loads((run / "summary.json").read_text())["goals"]}
    assert goals["RL raises accuracy over the warm start by ≥ 10 points"] == "inside the noise"
    assert goals["RL raises accuracy over the warm start"] == "met"  # 5 questions better, none worse
    assert goals["≥ 90 % of tool-needing questions get a call"] == "inside the noise"  # 32 of 32: [89.3, 100]
    assert "≈ inside the noise: RL raises accuracy over the warm start by ≥ 10 points: +12.5 [" in text
    assert "✅ met: RL raises accuracy over the warm start by ≥ 10" not in text
    assert "Wilson score interval" in text


def test_a_paired_comparison_uses_only_shared_questions(run: Path, tmp_path: Path):
    copy = tmp_path / "job"
    shutil.copytree(run / "eval", copy / "eval")
    tapo = copy / "eval" / "tapo"
    write_jsonl(tapo / "trajectories.jsonl", [t.to_row() for t in load_trajectories(tapo)[:30]])
    write_results(copy, ARMS)
    paired = json.loads((copy / "summary.json").read_text())["comparisons"]
    assert paired["TAPO (RL on the warm start) − warm start (SFT)"]["n"] == 30


def test_seed_spread(run: Path, tmp_path: Path):
    models = {name: load_model(name, TITLES[name], run / "eval" / name) for name in ("sft", "tapo")}
    models["tapo-seed1"] = load_model("tapo-seed1", "TAPO seed 1", run / "eval" / "sft")
    (line,) = seed_spread(models)
    assert line.startswith("TAPO (RL on the warm start): 2 seeds, accuracy 35.0, 22.5 (mean 28.7")
    assert "range 12.5 points" in line
    assert seed_spread({"tapo": models["tapo"]}) == []


def test_the_summary_says_when_guidance_was_on(run: Path, tmp_path: Path):
    copy = tmp_path / "job"
    shutil.copytree(run, copy)
    assert "guidance" not in write_results(copy, ARMS)  # the TAPO run logged no guidance/*: it was off
    rows = read_jsonl(copy / "tapo" / "metrics.jsonl")
    tallies = [{"guidance/failed_groups": 3.0, "guidance/injected": 2.0}, {"guidance/failed_groups": 1.0,
               "guidance/injected": 1.0}]  # fmt: skip
    write_jsonl(copy / "tapo" / "metrics.jsonl", [row | tally for row, tally in zip(rows, tallies, strict=True)])
    text = write_results(copy, ARMS)
    assert "TAPO (RL on the warm start): guidance on (trainer.guidance, not in TAPO" in text
    assert "3 expert trajectories" in text and "3 of the 4 sampled groups with no right answer, over 2 steps" in text
    assert any("guidance on" in note for note in json.loads((copy / "summary.json").read_text())["notes"])


def test_the_summary_says_where_each_arms_rollouts_went(run: Path, tmp_path: Path):
    """The informative share is weighted by each step's sampled trajectories, not averaged over steps; the prompts
    skipping held back are named only when it was on."""
    copy = tmp_path / "job"
    shutil.copytree(run, copy)
    rows = read_jsonl(copy / "tapo" / "metrics.jsonl")
    shares = [{"sampling/informative_frac": 1.0, "sampled/trajectories": 8.0},
              {"sampling/informative_frac": 0.25, "sampled/trajectories": 24.0}]  # fmt: skip
    write_jsonl(copy / "tapo" / "metrics.jsonl", [row | share for row, share in zip(rows, shares, strict=True)])
    text = write_results(copy, ARMS)
    line = "TAPO (RL on the warm start): 44% of the 32 trajectories sampled over 2 steps were in informative groups"
    assert line in text and "skipping" not in text  # (8 + 6) / 32, where the mean of the steps would say 62 %
    shares[0]["sampling/skipped_prompts"], shares[1]["sampling/skipped_prompts"] = 5.0, 2.0
    write_jsonl(copy / "tapo" / "metrics.jsonl", [row | share for row, share in zip(rows, shares, strict=True)])
    assert "skipping (trainer.skip_constant, GRESO, not in TAPO) held back 7 prompts" in write_results(copy, ARMS)
    shares[0] |= {"sampling/all_wrong_frac": 0.0, "sampling/all_right_frac": 0.0}
    shares[1] |= {"sampling/all_wrong_frac": 0.5, "sampling/all_right_frac": 0.25}
    write_jsonl(copy / "tapo" / "metrics.jsonl", [row | share for row, share in zip(rows, shares, strict=True)])
    split = "carried no gradient: 38% in groups with every answer wrong, 19% all right)"  # 12 and 6 of the 32
    assert split in write_results(copy, ARMS)


def test_following_the_plan_means_its_tools_in_its_order():
    """Search then code is not the plan search then search (a multi-hop answered with code), nor code then search."""
    from pipeline_run import plan_step, question, scored_trajectory
    from tapo.data.mini.oracle_plan import OraclePlan
    from tapo.eval.samples import record_from_trajectory
    from tapo.records import Turn

    example = question(1)  # multi_hop
    example.meta["plan"] = OraclePlan((plan_step("search", 1), plan_step("search", 1))).to_meta()

    def follows(*tools: str) -> bool | None:
        turns = [Turn(tool, "x", "y") for tool in tools] + [Turn("answer", "1")]
        return record_from_trajectory(scored_trajectory(example, "", turns, False, "answer")).follows_plan

    assert follows("search", "search") is True
    assert follows("search", "code") is False
    assert follows("search") is False
    assert follows("search", "search", "search") is False
    example.meta.pop("plan")
    assert follows("search") is None


def _with_seeds(run: Path, root: Path, right: dict[str, int]) -> str:
    """``run`` with TAPO evaluated on more seeds: ``right[name]`` questions right (the first ones), as
    ``tapo-seed1``, ...; returns the rebuilt summary.md."""
    shutil.copytree(run, root)
    arms = [TAPO]
    for name, n in right.items():
        trajectories = [tool_trajectory(question(i), i < n) for i in range(QUESTIONS)]
        eval_result(trajectories, name, data="data/test.jsonl", template="minimal").save(root / "eval" / name)
        if name != TAPO.name:
            seed = seed_of(name)[1]
            arms.append(TAPO.seeded(seed, seed))
    return write_results(root, arms)


def test_seeds_give_each_gain_with_its_interval_the_mean_and_sd_and_gains_by_kind(run: Path, tmp_path: Path):
    # the warm start gets questions 0-8 right; TAPO's seeds 0-13, 0-19 and 0-17: +12.5, +27.5, +22.5 points
    text = _with_seeds(run, tmp_path / "job", {"tapo-seed1": 20, "tapo-seed2": 18})
    summary = json.loads((tmp_path / "job" / "summary.json").read_text())
    (table,) = [t for t in summary["tables"] if "seed by seed" in t["caption"]]
    assert table["headers"][:3] == ["seed", "questions", "RL − warm start [95 % CI]"]
    assert table["headers"][3:] == [f"{kind} Δ" for kind in KINDS]
    seeds, mean, sd = table["rows"][:3], table["rows"][3], table["rows"][4]
    assert [row[:2] for row in seeds] == [["seed 0", "40"], ["seed 1", "40"], ["seed 2", "40"]]
    assert [row[2].split(" [")[0] for row in seeds] == ["+12.5", "+27.5", "+22.5"]
    assert all(re.fullmatch(r"\+\d+\.\d \[\+\d+\.\d, \+\d+\.\d\]", row[2]) for row in seeds)
    # seed 1 gained questions 9-19; of the single_hop ones (i % 5 == 0) that is 10 and 15: 2 of 8
    assert seeds[1][3].startswith("+25.0 [")
    assert mean[0] == "mean of seeds" and mean[2].startswith("+20.8 [")  # the seeds' mean accuracy per question
    assert sd[0] == "sd of seeds (n − 1)" and sd[2] == "7.6"  # sample sd of 12.5, 27.5, 22.5
    goals = {g["goal"]: g for g in summary["goals"]}
    raised = goals["RL raises accuracy over the warm start (on every seed)"]
    assert raised["verdict"] == "met"  # every seed's interval above 0
    assert raised["measured"].startswith("seed 0 +12.5 [") and "mean +20.8, sd 7.6 points over 3 seeds" in text
    assert goals["RL raises accuracy over the warm start by ≥ 10 points (on every seed)"]["verdict"] == "met"
    assert "RL raises accuracy over the warm start by ≥ 10 points" not in goals  # not decided on one run


def test_a_goal_about_rl_is_not_met_when_one_seed_lost_and_in_the_noise_when_one_gained_nothing(
    run: Path, tmp_path: Path
):
    _with_seeds(run, tmp_path / "flat", {"tapo-seed1": 20, "tapo-seed2": 9})  # +12.5, +27.5, +0.0
    goals = {g["goal"]: g["verdict"] for g in json.loads((tmp_path / "flat" / "summary.json").read_text())["goals"]}
    # the mean gain (+13.3) meets 10 points, but one seed's interval reaches 0: no seed may be left unproven
    assert goals["RL raises accuracy over the warm start (on every seed)"] == "inside the noise"
    assert goals["RL raises accuracy over the warm start by ≥ 10 points (on every seed)"] == "inside the noise"
    _with_seeds(run, tmp_path / "lost", {"tapo-seed1": 20, "tapo-seed2": 4})  # +12.5, +27.5, -12.5
    goals = {g["goal"]: g["verdict"] for g in json.loads((tmp_path / "lost" / "summary.json").read_text())["goals"]}
    assert goals["RL raises accuracy over the warm start (on every seed)"] == "not met"  # seed 2 is wholly below 0
    assert goals["RL raises accuracy over the warm start by ≥ 10 points (on every seed)"] == "not met"


def test_the_warm_start_table_puts_its_demonstrations_beside_its_plans_followed_by_kind(run: Path, tmp_path: Path):
    copy = tmp_path / "job"
    shutil.copytree(run, copy)
    assert not [t for t in json.loads((copy / "summary.json").read_text())["tables"] if t["headers"][0] == "kind"]
    demos = [tool_trajectory(question(i), True) for i in (0, 5, 10, 2)]  # kinds: 3 single_hop, 1 code
    write_jsonl(copy / "demos.jsonl", [d.to_row() for d in demos])
    write_results(copy, ARMS)
    (table,) = [t for t in json.loads((copy / "summary.json").read_text())["tables"] if t["headers"][0] == "kind"]
    assert table["caption"].startswith("warm start (SFT) by question kind: the demonstrations it was trained on (4 in")
    rows = {row[0]: row[1:] for row in table["rows"]}
    assert list(rows) == list(KINDS)
    assert rows["single_hop"][:2] == ["3", "8"] and rows["code"][:2] == ["1", "8"] and rows["search_code"][0] == "0"
    # the synthetic warm start calls every plan's tools (8 of 8 of each kind) and gets questions 0-8 right
    assert rows["search_code"][2] == "100.0 [67.6, 100.0]"
    assert rows["single_hop"][3] == "25.0 [7.1, 59.1]"  # questions 0 and 5 of 0, 5, ..., 35
