"""TAPO's published data (``Goer17/TAPO``): {train,test}.parquet with verl's nested ``reward_model`` into tapo rows.

The fixture is written here with pyarrow in the published layout: ``reward_model`` is a struct whose
``ground_truth`` is ``{"target": [...]}`` in train (as the original's data_proc scripts write it) and a plain string
in test (the other form its scorer accepts).
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from tapo.cli.main import app
from tapo.data.io import DataError, load_examples
from tapo.data.published import build_published, convert_row

TRAIN = [
    ("Who wrote Hamlet?", "nq", "fact-reasoning", ["William Shakespeare", "Shakespeare"]),
    ("  What is 12 * 7?  ", "calculator", "calculation", ["84"]),
    ("Natalia sold 48 clips in April ...", "gsm8k", "math", ["72"]),
    ("Find the number of ordered pairs ...", "aime_2025", "math", ["204"]),
    ("Find the remainder when ... is divided by 1000.", "aime_2024_I", "math", ["25"]),  # TAPO takes any aime*
    ("Solve x + 1 = 3.", "dapo_math", "math", ["2"]),
    ("How many degrees ... deep?", "deep_math", "math", ["90"]),
    ("When was the Eiffel Tower built? Subtract it from 2024.", "complex", "fact-calculation", ["135"]),
    ("What is the capital of France?", "default", "general", ["Paris"]),
    ("who wrote hamlet?", "nq", "fact-reasoning", ["Shakespeare"]),  # repeated question
    ("What is SQuAD?", "squad", "qa", ["a dataset"]),  # no scorer knows it
    ("A question with no gold?", "nq", "fact-reasoning", []),
    ("", "nq", "fact-reasoning", ["x"]),
]
TEST = [
    ("What is 2 ** 10?", "calculator", "calculation", " 1024 "),
    ("Who painted the Mona Lisa?", None, "qa", "Leonardo"),
]


def _write(path: Path, rows, truth_type: pa.DataType) -> None:
    truth = (lambda golds: {"target": golds}) if pa.types.is_struct(truth_type) else (lambda golds: golds)
    schema = pa.schema(
        [
            ("data_source", pa.string()),
            ("question", pa.string()),
            ("ability", pa.string()),
            ("reward_model", pa.struct([("style", pa.string()), ("ground_truth", truth_type)])),
            ("extra_info", pa.struct([("index", pa.int64())])),
        ]
    )
    records = [
        {
            "data_source": source,
            "question": question,
            "ability": ability,
            "reward_model": {"style": "rule", "ground_truth": truth(golds)},
            "extra_info": {"index": index},
        }
        for index, (question, source, ability, golds) in enumerate(rows)
    ]
    pq.write_table(pa.Table.from_pylist(records, schema=schema), path)


@pytest.fixture
def published(tmp_path) -> Path:
    directory = tmp_path / "published"
    directory.mkdir()
    _write(directory / "train.parquet", TRAIN, pa.struct([("target", pa.list_(pa.string()))]))
    _write(directory / "test.parquet", TEST, pa.string())
    return directory


def _tapo_scorer(source: str) -> str | None:
    from tapo.config.schema import RewardConfig
    from tapo.rewards.registry import RewardError, ScorerRegistry

    registry = ScorerRegistry(RewardConfig(preset="tapo"))
    try:
        return registry.resolve(source)[0]
    except RewardError:
        return None
    finally:
        registry.close()


def test_published_layout_loads_with_tapo_scorers(published, tmp_path):
    out = tmp_path / "out"
    manifest = build_published(published, out, _tapo_scorer)
    train = load_examples(out / "train.parquet")
    validation = load_examples(out / "validation.parquet")
    assert [row.data_source for row in train] == [source for _, source, _, _ in TRAIN[:9]]
    assert train[0].golds == ["William Shakespeare", "Shakespeare"] and train[0].ability == "fact-reasoning"
    assert train[1].question == "What is 12 * 7?"
    assert {row.split for row in train} == {"train"} and {row.split for row in validation} == {"validation"}
    assert [(row.data_source, row.golds) for row in validation] == [("calculator", ["1024"]), ("default", ["Leonardo"])]
    assert manifest["scorers"] == {
        "aime_2024_I": "exact",
        "aime_2025": "exact",
        "calculator": "calculator",
        "complex": "tapo_complex",
        "dapo_math": "exact",
        "deep_math": "exact",
        "default": "exact",
        "gsm8k": "exact",
        "nq": "nq",
    }
    assert manifest["dropped"] == {
        "data_source 'squad' has no scorer": {"train": 1},
        "no gold answer under reward_model.ground_truth": {"train": 1},
        "question missing or empty": {"train": 1},
        "repeated question": {"train": 1},
    }
    assert manifest["repaired"] == {
        "data_source missing, set to 'default'": {"test": 1},
        "ground_truth a single answer, made a list": {"test": 2},
        "whitespace around a gold stripped": {"test": 1},
        "whitespace around the question stripped": {"train": 1},
    }
    assert manifest["read"] == {"train": 13, "test": 2} and manifest["kept"] == {"train": 9, "test": 2}


@pytest.mark.parametrize(
    ("truth", "golds", "repairs"),
    [
        ({"target": ["a", "b"]}, ["a", "b"], []),
        (["a"], ["a"], []),
        ("a", ["a"], ["ground_truth a single answer, made a list"]),
        (42.0, ["42"], ["ground_truth a single answer, made a list", "gold not a string, made text"]),
        ({"target": [3, ""]}, ["3"], ["gold not a string, made text", "empty or non-text gold removed"]),
    ],
)
def test_every_ground_truth_form_the_original_accepts(truth, golds, repairs):
    fields, made, dropped = convert_row(
        {"question": "q?", "data_source": "nq", "reward_model": {"ground_truth": truth}}
    )
    assert dropped is None and fields is not None
    assert (fields["golds"], made) == (golds, repairs)


def test_missing_split_file_or_column_is_one_clear_error(published, tmp_path):
    (published / "test.parquet").unlink()
    with pytest.raises(DataError, match=r"test\.parquet not found: TAPO's published layout"):
        build_published(published, tmp_path / "out", _tapo_scorer)
    pq.write_table(pa.table({"question": ["q?"]}), published / "test.parquet")
    with pytest.raises(DataError, match="no column reward_model"):
        build_published(published, tmp_path / "out", _tapo_scorer)


def test_cli_reports_scorers_and_each_kind_of_repair_and_drop(published, tmp_path):
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["data", "build", "tapo", "--source-dir", str(published), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "11 of 15 rows kept" in result.output
    assert "dropped  repeated question: 1 (train 1)" in result.output
    assert "repaired  ground_truth a single answer, made a list: 2 (test 2)" in result.output
    assert json.loads((out / "manifest.json").read_text())["scorers"]["nq"] == "nq"
    missing = CliRunner().invoke(app, ["data", "build", "tapo", "--data", str(tmp_path / "nowhere"), "--out", str(out)])
    assert missing.exit_code == 1 and "train.parquet" in missing.output


def test_published_data_as_an_environment_is_the_same_rows(published, tmp_path, monkeypatch):
    """``env.name=tapo-published``: the rows `tapo data build tapo` writes, scored as TAPO's code scored them."""
    from tapo.envs.apply import configure, write_data

    monkeypatch.setenv("TAPO_HOME", str(tmp_path / "home"))
    config = configure(None, ["env.name=tapo-published", f"env.args={{location: {published}}}"])
    files = write_data(config)
    assert set(files) == {"train", "validation"} and config.data.test is None
    build_published(published, tmp_path / "direct", _tapo_scorer)
    for split in files:
        assert load_examples(files[split]) == load_examples(tmp_path / "direct" / f"{split}.parquet")
    assert config.reward.preset == "tapo" and config.tools.enabled == ["search", "code"]
