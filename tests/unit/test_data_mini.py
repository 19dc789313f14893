"""TAPO-mini: determinism, the kind mix, split-by-entity, and an oracle that answers every sampled question."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tapo.data.io import load_examples
from tapo.data.mini import MiniDataset, MiniSizes, build_mini, generate_mini
from tapo.data.mini.oracle_plan import CodeStep, OraclePlan, PlanError, SearchStep
from tapo.data.mini.questions import KIND_MIX, NEEDS, kind_counts
from tapo.data.mini.world import ATTRIBUTES

SMALL = MiniSizes(train=120, validation=30, test=40)


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Path, dict, MiniDataset]:
    """The default-size build (files + index) and the same dataset in memory, made once for this module."""
    out = tmp_path_factory.mktemp("mini")
    return out, build_mini(out, seed=7), generate_mini(seed=7)


def _files(directory: Path) -> dict[str, bytes]:
    """Every file the build wrote (the index is not part of the byte-identity promise)."""
    return {path.name: path.read_bytes() for path in sorted(directory.glob("*.json*"))}


def test_same_seed_gives_byte_identical_files_and_another_seed_does_not(tmp_path):
    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        build_mini(tmp_path / name, seed=seed, sizes=SMALL, index=False)
    first, second, other = (_files(tmp_path / name) for name in "abc")
    assert set(first) == {"corpus.jsonl", "train.jsonl", "validation.jsonl", "test.jsonl", "manifest.json"}
    assert first == second
    assert first["train.jsonl"] != other["train.jsonl"]


def test_another_process_with_another_hash_seed_writes_the_same_bytes(tmp_path):
    """Set iteration order changes with PYTHONHASHSEED; the files must not."""
    here = build_mini(tmp_path / "here", seed=5, sizes=SMALL, index=False)["sha256"]
    script = (
        "import json, sys; from tapo.data.mini import MiniSizes, build_mini; "
        "print(json.dumps(build_mini(sys.argv[1], 5, MiniSizes(120, 30, 40), index=False)['sha256']))"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    done = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "there")], env=env, capture_output=True, text=True, check=True
    )
    assert json.loads(done.stdout) == here


def test_manifest_counts_and_hashes_match_the_files(built):
    out, manifest, _ = built
    assert manifest["seed"] == 7
    for split, expected in (("train", 2000), ("validation", 200), ("test", 300)):
        rows = load_examples(out / f"{split}.jsonl")
        assert len(rows) == manifest["counts"][split]["total"] == expected
        assert manifest["counts"][split]["kind"] == dict(sorted(kind_counts(expected).items()))
        assert sum(manifest["counts"][split]["level"].values()) == expected
        assert {row.split for row in rows} == {split}
    import hashlib

    for name, digest in manifest["sha256"].items():
        assert hashlib.sha256((out / name).read_bytes()).hexdigest() == digest
    assert json.loads((out / "manifest.json").read_text()) == manifest


def test_kind_counts_add_up_and_follow_the_mix():
    for total in (0, 1, 7, 199, 2000):
        counts = kind_counts(total)
        assert sum(counts.values()) == total
        assert all(abs(counts[kind] - total * share) < 1 for kind, share in KIND_MIX.items())


def test_no_test_split_entity_appears_in_train_questions(built):
    dataset = built[2]
    names = {split: {e.name for e in dataset.entities if e.split == split} for split in ("train", "validation", "test")}
    train_text = "\n".join(row.question for row in dataset.splits["train"])
    for held_out in ("validation", "test"):
        assert not any(name in train_text for name in names[held_out])
    for split, rows in dataset.splits.items():
        for row in rows:
            assert set(row.meta["entities"]) <= names[split], row
    questions = [row.question for rows in dataset.splits.values() for row in rows]
    assert len(questions) == len(set(questions))


def test_rows_follow_the_schema_the_pipeline_relies_on():
    dataset = generate_mini(seed=0, sizes=SMALL)
    for row in (row for rows in dataset.splits.values() for row in rows):
        meta = row.meta
        assert row.data_source == "tapo_mini"
        assert meta["needs"] == NEEDS[meta["kind"]]
        assert meta["level"] in ("easy", "hard")
        plan = OraclePlan.of(row)
        assert plan is not None and plan.to_meta() == meta["plan"]  # the stored plan parses back to itself
        assert sorted(set(plan.tools)) == sorted(meta["needs"])
        assert meta["answer"] == row.golds[0]
        for step in plan.searches:
            assert step.query in meta["entities"]
            assert step.fact.startswith("the ") and step.query in step.fact  # said in words
        assert all(gold == gold.strip() and "," not in gold for gold in row.golds)


@pytest.mark.parametrize(
    ("plan", "error"),
    [
        ({"tool": "search"}, "is a dict, not a list of steps"),
        (["search"], "step 1 is a str, not an object"),
        ([{"tool": "answer"}], "step 1: tool 'answer' is not one of search, code"),
        ([{"tool": "code", "code": "print(1)"}], r"step 1 \(code\): output missing or not text"),
        ([{"tool": "code", "code": "print(1)", "output": "1", "note": "x"}], r"step 1 \(code\): unknown note"),
    ],
)
def test_a_malformed_plan_is_one_clear_error(plan, error):
    row = generate_mini(seed=0, sizes=MiniSizes(train=1, validation=1, test=1)).splits["train"][0]
    row.meta["plan"] = plan
    with pytest.raises(PlanError, match=rf"^question '{row.id}' \(tapo_mini\): meta.plan {error}"):
        OraclePlan.of(row)
    row.meta.pop("plan")
    assert OraclePlan.of(row) is None  # a question of another dataset: no plan


def _run_plans(codes: list[str]) -> list[str]:
    """Run each plan's code with plain Python (one interpreter for all) and return what each printed."""
    script = (
        "import contextlib, io, json, sys\n"
        "outputs = []\n"
        "for code in json.load(sys.stdin):\n"
        "    buffer = io.StringIO()\n"
        "    with contextlib.redirect_stdout(buffer):\n"
        "        exec(code, {})\n"
        "    outputs.append(buffer.getvalue().strip())\n"
        "print(json.dumps(outputs))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], input=json.dumps(codes), capture_output=True, text=True, check=True
    )
    return json.loads(done.stdout)


def test_an_oracle_with_search_and_python_answers_every_sampled_question(built):
    from tapo.tools.search.bm25 import BM25Index

    out, _, dataset = built
    index = BM25Index.load(out / "index")
    rows = [row for rows in dataset.splits.values() for row in rows]
    sample = random.Random(0).sample(rows, 400)
    answers: list[str | None] = []
    codes: list[str] = []
    for row in sample:
        answer = None
        plan = OraclePlan.of(row)
        assert plan is not None
        for step in plan.steps:
            if isinstance(step, SearchStep):
                top = index.search(step.query, 1)[0]
                assert top.title == step.query
                assert dataset.entity(step.query).facts[step.attribute] == _typed(step.value)
                assert step.value in top.text
                answer = step.value
            else:
                numbers = [s.value for s in plan.searches if s.value.isdigit()]
                assert all(value in step.code for value in numbers)  # the code uses what the searches found
                codes.append(step.code)
                answer = None  # filled from the real run below
        answers.append(answer if plan.steps else row.meta["answer"])
    outputs = iter(_run_plans(codes))
    correct = 0
    for row, answer in zip(sample, answers, strict=True):
        if answer is None:
            answer = next(outputs)
        correct += answer in row.golds
    assert correct == len(sample)
    assert {row.meta["kind"] for row in sample} == set(KIND_MIX)
    names = [entity.name for entity in dataset.entities]  # every entity, not only the sampled ones, is findable
    assert [hits[0].title for hits in index.search_many(names, 1)] == names


def _typed(value: str) -> int | str:
    return int(value) if value.isdigit() else value


def test_passages_state_every_fact_and_relations_point_inside_the_split():
    dataset = generate_mini(seed=2, sizes=SMALL)
    by_name = {entity.name: entity for entity in dataset.entities}
    for entity in dataset.entities:
        passage = entity.passage()
        assert passage["title"] == entity.name
        for attribute in ATTRIBUTES[entity.kind]:
            if attribute.questions:
                assert str(entity.facts[attribute.name]) in passage["text"]
            if attribute.target:
                target = by_name[str(entity.facts[attribute.name])]
                assert target.kind == attribute.target and target.split == entity.split


@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, 2**31), train=st.integers(0, 60), test=st.integers(0, 30))
def test_any_seed_and_size_gives_consistent_golds(seed, train, test):
    dataset = generate_mini(seed, MiniSizes(train=train, validation=5, test=test))
    assert [len(dataset.splits[s]) for s in ("train", "validation", "test")] == [train, 5, test]
    for row in dataset.splits["train"] + dataset.splits["test"]:
        plan = OraclePlan.of(row)
        assert plan is not None
        if plan.steps:
            last = plan.steps[-1]
            assert (last.output if isinstance(last, CodeStep) else last.value) == row.golds[0]


def test_negative_sizes_are_rejected():
    with pytest.raises(ValueError, match="train size"):
        MiniSizes(train=-1)


def test_tapo_mini_as_an_environment_is_the_same_rows_and_index(tmp_path, monkeypatch):
    """``env.name=tapo-mini``: the rows `generate_mini` gives for that seed and those sizes, TAPO's prompt and tools,
    and the search index built beside them; the reward needs no setting (tapo_mini has its scorer)."""
    from tapo.config.schema import RewardConfig
    from tapo.envs.apply import configure, write_data

    monkeypatch.setenv("TAPO_HOME", str(tmp_path))
    config = configure(None, ["env.name=tapo-mini", "env.args={seed: 3, train: 12, validation: 4, test: 4}"])
    files = write_data(config)
    for split, rows in generate_mini(3, MiniSizes(12, 4, 4)).splits.items():
        assert load_examples(files[split]) == rows and Path(getattr(config.data, split)) == files[split]
    assert config.data.template == "base" and config.eval.tools == "all"
    assert config.tools.enabled == ["search", "code"] and config.tools.extra == []
    assert (Path(config.tools.search.backend.index_dir) / "meta.json").is_file()
    assert config.reward == RewardConfig()
