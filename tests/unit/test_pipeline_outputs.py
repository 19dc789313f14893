"""A finished stage is skipped only while its outputs are there and intact; a missing or damaged output runs that
stage again, and the stages that read it, and the job says so.

The job directory holds real outputs of each stage (TAPO-mini with its index, demonstrations, evaluations,
training runs with a checkpoint of the tiny model, the report), as the stages write them; the real stages and
their real checks are run by the real runner, with each stage's work replaced by a note that it ran.
"""

from __future__ import annotations

import io
import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
from rich.console import Console

from pipeline_run import eval_result, evaluation
from tapo.data.mini.build import MiniSizes, build_mini
from tapo.io.atomic import write_json, write_jsonl, write_text
from tapo.pipeline.job import MainJob
from tapo.pipeline.outputs import data_problem, eval_problem, run_problem, set_aside_unusable
from tapo.pipeline.profiles import load_profile
from tapo.pipeline.stages import Stage, StageRunner


def _checkpoint(run_dir: Path, model: str, step: int) -> None:
    """What a finished training run leaves: metrics up to ``step`` and its checkpoint ``step-N``."""
    checkpoint = run_dir / "checkpoints" / f"step-{step}"
    shutil.copytree(model, checkpoint / "model")
    write_json(checkpoint / "state" / "random_states.json", {})
    write_json(checkpoint / "trainer_state.json", {"step": step})
    write_jsonl(run_dir / "metrics.jsonl", [{"step": float(s)} for s in range(1, step + 1)])


@pytest.fixture
def job(tmp_path: Path, tiny_checkpoint: str) -> tuple[MainJob, io.StringIO]:
    """A job whose every stage finished: its outputs on disk and every stage in the state file."""
    log = io.StringIO()
    job = MainJob(load_profile("default"), tmp_path / "job", Console(file=log, width=250))
    job.write_config()
    build_mini(job.data_dir, seed=1, sizes=MiniSizes(train=8, validation=4, test=4))
    write_jsonl(job.demos_file, [{"prompt_ids": [1, 2], "response_ids": [3], "model_mask": [1]}])
    stages = job.stages()
    for stage in stages:
        if stage.name.startswith("eval-"):
            name = stage.name.removeprefix("eval-")
            eval_result(evaluation("base" if name == "base" else "sft")).save(job.root / "eval" / name)
        elif stage.kind in ("sft", "rl"):
            _checkpoint(job.root / stage.name, tiny_checkpoint, 2)
    write_text(job.root / "summary.md", "results\n")
    write_json(job.root / "summary.json", {"tables": []})
    write_text(job.root / "report" / "report.html", "<html></html>")
    write_json(job.root / "pipeline-state.json", {s.name: {"seconds": 1.0, "finished_at": 0.0} for s in stages})
    return job, log


def _rerun(job: MainJob) -> list[str]:
    """The job's stages through the runner, each doing nothing but note that it ran; the names that ran."""
    ran: list[str] = []

    def noted(stage: Stage) -> Stage:
        return replace(stage, run=lambda: ran.append(stage.name))

    StageRunner(job.root / "pipeline-state.json", job.console).run([noted(s) for s in job.stages()])
    return ran


def test_intact_outputs_keep_every_stage_done(job) -> None:
    job, log = job
    assert _rerun(job) == []
    assert log.getvalue().count("done earlier, skipped") == len(job.stages())


def test_a_deleted_model_reruns_its_stage_and_the_stages_that_read_it(job) -> None:
    job, log = job
    (job.root / "sft" / "checkpoints" / "step-2" / "model" / "model.safetensors").unlink()
    ran = _rerun(job)
    assert ran == ["sft", "eval-sft", "tapo", "eval-tapo", "report"]  # not data, demos nor eval-base
    said = log.getvalue()
    assert "supervised warm start on the demonstrations: done earlier, but" in said and "has no weights" in said
    assert _rerun(job) == ["sft", "eval-sft", "tapo", "eval-tapo", "report"]  # the fake stages wrote nothing


def test_a_deleted_evaluation_reruns_it_and_the_report(job) -> None:
    job, log = job
    (job.root / "eval" / "base" / "results.json").unlink()
    assert _rerun(job) == ["eval-base", "report"]
    assert "results.json is missing: running it again" in log.getvalue()


def test_changed_data_reruns_every_stage(job) -> None:
    job, log = job
    with (job.data_dir / "test.jsonl").open("a") as handle:
        handle.write("\n")
    assert _rerun(job) == [s.name for s in job.stages()]
    assert "test.jsonl differs from the sha256 in manifest.json" in log.getvalue()


def test_each_check_names_what_is_wrong(job) -> None:
    job, _ = job
    write_text(job.root / "eval" / "tapo" / "results.json", '{"model": ')
    assert "results.json is unreadable" in str(eval_problem(job.root / "eval" / "tapo"))
    weights = job.root / "tapo" / "checkpoints" / "step-2" / "model" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    assert "model/model.safetensors is corrupt or truncated" in str(run_problem(job.root / "tapo"))
    write_jsonl(job.root / "sft" / "metrics.jsonl", [{"step": 3.0}])  # its last checkpoint deleted
    assert run_problem(job.root / "sft") == "its newest checkpoint is step-2 but it trained to step 3"
    shutil.rmtree(job.root / "sft" / "checkpoints" / "step-2")
    assert run_problem(job.root / "sft") == f"{job.root / 'sft'} has no complete checkpoint"
    (job.data_dir / "index" / "meta.json").unlink()
    assert "is not a search index" in str(data_problem(job.data_dir))
    assert json.loads((job.root / "pipeline-state.json").read_text())  # the checks change nothing


def test_a_rerun_training_stage_keeps_an_intact_run_and_sets_a_broken_checkpoint_aside(job) -> None:
    """Nothing is thrown away: an intact finished warm start is kept as it is (``tapo sft`` refuses a finished
    run), and a checkpoint that fails the checks is renamed out of the way, not deleted, so the stage can start
    over."""
    job, log = job
    job.train_sft()  # runs no command
    assert "the warm start is finished and intact, kept" in log.getvalue()
    weights = job.root / "tapo" / "checkpoints" / "step-2" / "model" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    assert set_aside_unusable(job.root / "tapo") == [job.root / "tapo" / "checkpoints" / "set-aside-step-2"]
    assert not list((job.root / "tapo" / "checkpoints").glob("step-*"))
    assert set_aside_unusable(job.root / "sft") == []
