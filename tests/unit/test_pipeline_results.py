"""The main job's summary: question counts and 95 % intervals on every accuracy, paired differences, and goals
decided by their intervals (the +12.5 points on 40 questions that summary.md once ticked is inside the noise)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from pipeline_run import ARMS, TITLES, build_pipeline_run
from tapo.eval.result_dir import load_trajectories
from tapo.io.atomic import read_jsonl, write_jsonl
from tapo.pipeline.summary import load_model, seed_spread, write_results

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
