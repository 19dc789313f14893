"""TAPO-easy/hard builders and benchmark loaders, run through the hub code path on fixture files with hub columns."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tapo.data.arith import apportion, evaluate
from tapo.data.benchmarks import BENCHMARKS, QA_SUITE, load_benchmark
from tapo.data.builders import RECIPES, build_dataset
from tapo.data.io import DataError, load_examples
from tapo.data.sources import Source, convert, dapo_math, deepmath, gsm8k, hotpotqa, load_raw, nq_open

FIXTURES = Path(__file__).parents[1] / "fixtures" / "data" / "sources"


def test_every_benchmark_loads_from_its_fixture():
    for name, source in BENCHMARKS.items():
        rows = load_benchmark(name, FIXTURES)
        assert len(rows) == 3, name
        assert {row.data_source for row in rows} == {name}
        assert {row.split for row in rows} == {"test"}
        assert all(row.golds and row.question for row in rows)
        assert all(row.meta["source"] == source.hub_id for row in rows)
    assert set(QA_SUITE) <= set(BENCHMARKS)
    assert [row.golds for row in load_benchmark("gsm8k", FIXTURES)] == [["18"], ["3"], ["70000"]]
    assert load_benchmark("aime24", FIXTURES)[1].golds == ["025"]  # kept as written; scorers normalize
    assert load_benchmark("nq", FIXTURES)[2].golds == ["Olivia", "MFSK"]
    assert load_benchmark("nq", FIXTURES)[0].question == "who got the first nobel prize in physics?"
    assert len(load_benchmark("musique", FIXTURES, limit=2)) == 2


def test_unknown_benchmark_and_bad_limit_are_errors():
    with pytest.raises(ValueError, match="unknown benchmark 'squad'"):
        load_benchmark("squad", FIXTURES)
    with pytest.raises(ValueError, match="limit"):
        load_benchmark("nq", FIXTURES, limit=0)


def test_converters_follow_the_hub_layouts():
    assert nq_open({"question": "who wrote it", "answer": ["Thomas Jefferson"]}) == (
        "who wrote it?",
        ["Thomas Jefferson"],
        {},
    )
    assert nq_open({"question": "q", "answer": ["a very long answer with many words"]}) is None
    assert gsm8k({"question": " q ", "answer": "work\n#### 1,200,000"}) == ("q", ["1200000"], {})
    assert gsm8k({"question": "q", "answer": "no final line"}) is None
    row = {"id": "x", "question": "q", "answer": "yes", "type": "comparison", "level": "hard"}
    assert hotpotqa(("hard",))(row)[1] == ["yes"]
    assert hotpotqa(("easy", "medium"))(row) is None
    hard_only = deepmath(min_difficulty=6.0)
    assert hard_only({"question": "q", "final_answer": "3", "difficulty": 5.5, "topic": "t"}) is None
    assert hard_only({"question": "q", "final_answer": "3", "difficulty": 6.0, "topic": "t"})[1] == ["3"]
    assert hard_only({"question": "q", "final_answer": "x" * 40, "difficulty": 9.0, "topic": "t"}) is None


def test_dapo_instruction_wrapper_is_removed():
    raw = load_raw(
        Source("dapo_math", "BytedTsinghua-SIA/DAPO-Math-17k", "train", dapo_math, "dapo_math", "math"), FIXTURES
    )
    question, golds, meta = dapo_math(raw[0])
    assert question == "In triangle $ABC$, $AB = 13$, $BC = 14$, and $CA = 15$. Find the area of the triangle."
    assert golds == ["84"] and meta["source_id"].endswith("-dapo")


def test_missing_local_copy_and_wrong_columns_are_clear_errors(tmp_path):
    with pytest.raises(DataError, match=r"gsm8k/test\.jsonl \(or \.json/\.parquet\) not found.*openai/gsm8k"):
        load_benchmark("gsm8k", tmp_path)
    (tmp_path / "gsm8k").mkdir()
    (tmp_path / "gsm8k" / "test.jsonl").write_text(json.dumps({"problem": "p", "solution": "s"}) + "\n")
    with pytest.raises(DataError, match=r"openai/gsm8k \(main\) \[test\], row 1: cannot convert \(KeyError"):
        load_benchmark("gsm8k", tmp_path)


def test_convert_counts_filtered_rows_and_duplicate_questions():
    source = BENCHMARKS["gsm8k"]
    rows = [{"question": "a", "answer": "#### 1"}, {"question": "b", "answer": "none"}]
    rows.append({"question": " A ", "answer": "#### 2"})  # the same question as the first, case and spacing aside
    result = convert(source, rows, "test")
    assert (len(result.examples), result.filtered, result.duplicates, result.read) == (2, 1, 0, 3)
    seen: set[str] = set()
    result = convert(source, rows, "test", seen)
    assert (len(result.examples), result.filtered, result.duplicates) == (1, 1, 1)
    assert result.examples[0].id == "gsm8k-test-0" and seen == {"a"}


@pytest.fixture(scope="module")
def easy(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("easy")
    return out, build_dataset("tapo-easy", out, FIXTURES, seed=5, size=150)


def test_easy_build_has_the_requested_size_and_an_honest_manifest(easy):
    out, manifest = easy
    train, validation = load_examples(out / "train.parquet"), load_examples(out / "validation.parquet")
    assert len(train) == 150 and len(validation) == 2
    assert {row.split for row in train} == {"train"} and {row.split for row in validation} == {"validation"}
    for split, rows in (("train", train), ("validation", validation)):
        counted = {source: sum(row.data_source == source for row in rows) for source in manifest["counts"][split]}
        assert counted == manifest["counts"][split]
    report = manifest["sources_report"]
    assert report["nq_open"] == {"read": 10, "filtered": 1, "duplicates": 0, "taken": 9}
    assert report["hotpotqa"]["taken"] == 3  # easy and medium rows only
    assert report["gsm8k"]["taken"] == 3  # the row without '####' is filtered
    source_quota = sum(manifest["quotas"][key] for key in ("nq_open", "hotpotqa", "gsm8k"))
    assert manifest["shortfall_filled_by_generated"] == source_quota - 15
    questions = [row.question.lower() for row in train + validation]
    assert len(questions) == len(set(questions))


def test_generated_items_have_correct_golds(easy):
    out, _ = easy
    rows = load_examples(out / "train.parquet") + load_examples(out / "validation.parquet")
    facts = {row.id: row for row in load_benchmark("nq", FIXTURES)}  # unrelated ids: must not collide
    complex_rows = [row for row in rows if row.data_source == "complex"]
    assert complex_rows, "numeric NQ/HotpotQA answers in the fixtures must give complex items"
    for row in complex_rows:
        assert row.meta["fact_id"] not in facts
        assert str(row.meta["fact_answer"]) in row.meta["expression"]
        assert evaluate(row.meta["expression"]) == row.golds[0]
    for row in (row for row in rows if row.data_source == "calculator"):
        assert evaluate(row.meta["expression"]) == row.golds[0]
        float(row.golds[0])


def test_same_seed_same_files_and_hard_validation_holds_aime(tmp_path):
    first = build_dataset("tapo-hard", tmp_path / "a", FIXTURES, seed=1, size=40)
    second = build_dataset("tapo-hard", tmp_path / "b", FIXTURES, seed=1, size=40)
    assert first["sha256"] == second["sha256"]
    validation = load_examples(tmp_path / "a" / "validation.parquet")
    assert sum(row.data_source == "aime24" for row in validation) == 3
    train = load_examples(tmp_path / "a" / "train.parquet")
    assert not {row.question for row in train} & {row.question for row in validation}
    assert {"dapo_math", "deepmath", "hotpotqa"} <= {row.data_source for row in train}
    assert sum(row.data_source == "dapo_math" for row in train) == 3  # the hub file's duplicate is removed


def test_recipes_add_up_to_the_paper_sizes_and_bad_arguments_fail(tmp_path):
    for recipe in RECIPES.values():
        total = sum(count for _, count in recipe.sources) + sum(count for _, count in recipe.generated)
        assert total == recipe.size
    assert RECIPES["tapo-easy"].size == 60_000 and RECIPES["tapo-hard"].size == 18_000
    with pytest.raises(ValueError, match="unknown dataset"):
        build_dataset("tapo-medium", tmp_path, FIXTURES)
    with pytest.raises(ValueError, match="size"):
        build_dataset("tapo-easy", tmp_path, FIXTURES, size=0)


def test_apportion_adds_up_exactly():
    assert apportion(10, {"a": 1, "b": 1, "c": 1}) == {"a": 4, "b": 3, "c": 3}
    assert sum(apportion(60_606, {"x": 0.3, "y": 0.7}).values()) == 60_606


def test_hard_training_never_holds_a_validation_benchmark_question(tmp_path):
    import shutil

    sources = tmp_path / "sources"
    shutil.copytree(FIXTURES, sources)
    aime = load_benchmark("aime24", FIXTURES)[0].question
    (sources / "dapo_math" / "train.parquet").unlink()
    wrapped = f"Solve the following math problem step by step. The last line ...\n\n{aime}"
    row = {"prompt": [{"content": wrapped, "role": "user"}], "reward_model": {"ground_truth": "204"}, "extra_info": {}}
    (sources / "dapo_math" / "train.jsonl").write_text(json.dumps(row) + "\n")
    manifest = build_dataset("tapo-hard", tmp_path / "out", sources, seed=0, size=20)
    assert manifest["sources_report"]["dapo_math"]["duplicates"] == 1
    assert aime not in {row.question for row in load_examples(tmp_path / "out" / "train.parquet")}
