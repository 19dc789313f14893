"""`tapo train --dry-run`: every shipped config passes with its data and index pointed at a small TAPO-mini build,
broken batch arithmetic fails with one line, and every failure is reported together.

Each dry run trains one step of a tiny stand-in model with the real tools, capped at a few tokens by
``--dry-run-tokens``; the checks read the config's own numbers.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from tapo.cli.main import app
from tapo.config import load_config
from tapo.models.resolve import read_architecture
from tapo.train.plan import Launch, batch_arithmetic, memory_estimate, read_launch

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = sorted((ROOT / "configs").glob("*.yaml"))


@pytest.fixture(scope="module")
def mini(tmp_path_factory) -> Path:
    from tapo.data.mini import MiniSizes, build_mini

    out = tmp_path_factory.mktemp("mini")
    build_mini(out, seed=0, sizes=MiniSizes(train=8, validation=2, test=2))
    return out


def _dry_run(config: Path, *overrides: str):
    return CliRunner().invoke(
        app,
        ["train", "--config", str(config), "--dry-run", "--dry-run-tokens", "24", "run.torch_threads=1", *overrides],
    )


@pytest.mark.parametrize("config", CONFIGS, ids=lambda path: path.stem)
def test_every_shipped_config_passes_with_local_data(config, mini, tmp_path, monkeypatch, one_thread):
    monkeypatch.chdir(tmp_path)  # issue 28: the accelerate config is read against the config file, from anywhere
    result = _dry_run(
        config,
        f"data.train={mini / 'train.jsonl'}",
        f"tools.search.backend.index_dir={mini / 'index'}",
        f"run.output_dir={tmp_path}",
    )
    assert result.exit_code == 0, result.output
    assert "dry run passed" in result.output and "trajectories per step" in result.output
    if config.stem.startswith("qwen"):
        assert "stand-in: Qwen2ForCausalLM" in result.output
        assert "GiB of 80 GiB per GPU" in result.output
    assert not (tmp_path / "dry-run").exists()  # the step's run directory is temporary


def test_the_step_trains_the_top_layers_the_config_names(mini, tmp_path, monkeypatch, one_thread):
    """The pipeline profiles train the top 10 layers: the stand-in has them, and one frozen layer below (it had 2
    layers, and the step failed with 'model.trainable_layers=10 but the model has 2 layers')."""
    monkeypatch.chdir(tmp_path)
    result = _dry_run(
        ROOT / "configs" / "smollm2-cpu.yaml",
        "model.trainable_layers=10",
        f"data.train={mini / 'train.jsonl'}",
        f"tools.search.backend.index_dir={mini / 'index'}",
        f"run.output_dir={tmp_path}",
    )
    assert result.exit_code == 0, result.output
    assert "dry run passed" in result.output


def test_broken_batch_arithmetic_fails_with_one_line(mini, tmp_path):
    result = _dry_run(
        ROOT / "configs" / "tiny-cpu.yaml",
        f"data.train={mini / 'train.jsonl'}",
        f"tools.search.backend.index_dir={mini / 'index'}",
        "trainer.mini_batch_size=12",
        "trainer.micro_batch_size=4",
    )
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if "x trainer:" in line]
    assert len(lines) == 1 and "16 trajectories do not split into mini-batches of" in lines[0]
    assert "dry-run step" not in result.output  # nothing is trained when a check fails


def test_every_failure_is_reported_together(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    result = _dry_run(
        ROOT / "configs" / "qwen2.5-7b-2node.yaml",
        f"data.train={tmp_path / 'missing.parquet'}",
        f"tools.search.backend.index_dir={tmp_path / 'no-index'}",
        "rollout.engine.gpu_memory_utilization=0.9",
    )
    assert result.exit_code == 1
    assert "3 problem(s) would stop this run" in result.output
    assert "missing.parquet" in result.output and "no-index" in result.output and "memory: about" in result.output


def test_batch_arithmetic_over_processes():
    config = load_config([str(ROOT / "configs" / "qwen2.5-3b-1node.yaml")], [])
    lines, failures = batch_arithmetic(config, 8)
    assert not failures and "64 prompts x 4 = 256 trajectories" in lines[0] and "16 / 8 processes = 2" in lines[0]
    assert batch_arithmetic(config, 3)[1] == [
        "trainer.mini_batch_size=16 does not divide over 3 processes; make it a multiple of 3"
    ]


def test_memory_estimate_shards_over_the_accelerate_config(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # issue 28: outside the repository it read one process and a false out-of-memory
    config = load_config([str(ROOT / "configs" / "qwen2.5-3b-1node.yaml")], [])
    architecture, _ = read_architecture(config.model.name)
    assert round(architecture.parameters / 1e9, 2) == 3.09  # Qwen2.5-3B's published count
    launch = read_launch(config.run.accelerate_config)
    assert (launch.processes, launch.shard_weights, launch.shard_optimizer) == (8, True, True)
    sharded = memory_estimate(config, architecture, launch, 80)
    alone = memory_estimate(config, architecture, Launch(), 80)
    assert sharded.parts["AdamW states (2 x float32)"] * 8 == pytest.approx(alone.parts["AdamW states (2 x float32)"])
    assert sharded.peak < 80 * 1024**3 < alone.peak


def test_a_cpu_run_shows_each_holder_and_fails_over_the_memory_available(mini, tmp_path, monkeypatch):
    args = [f"data.train={mini / 'train.jsonl'}", f"tools.search.backend.index_dir={mini / 'index'}"]
    monkeypatch.setenv("TAPO_MEMORY_GIB", "0.1")
    result = _dry_run(ROOT / "configs" / "smollm2-cpu.yaml", *args, "trainer.kl_coef=0.01")
    assert result.exit_code == 1
    assert "memory (estimate, this machine's CPU run)" in result.output
    holders = ("weights (135 M", "AdamW states", "reference copy", "KV store bound", "log-prob head", "activations")
    assert all(holder in result.output for holder in holders)
    assert "over the 0.1 GiB available; lower trainer.micro_batch_size" in result.output
    assert "dry-run step" not in result.output


def test_an_explicit_head_dim_sizes_attention_and_the_kv_cache():
    """Qwen3 states head_dim 128 where hidden / heads is 64: reading it gives the published 0.6B parameters (0.44B
    outside the embeddings) and keys/values of 128 per head (the KV estimate reads head_dim); the implied 64 gave
    0.51B."""
    from tapo.models.architecture import Architecture

    qwen3 = {  # huggingface.co/Qwen/Qwen3-0.6B/blob/main/config.json
        "model_type": "qwen3",
        "hidden_size": 1024,
        "intermediate_size": 3072,
        "num_hidden_layers": 28,
        "num_attention_heads": 16,
        "num_key_value_heads": 8,
        "head_dim": 128,
        "vocab_size": 151936,
        "max_position_embeddings": 40960,
        "tie_word_embeddings": True,
    }
    architecture = Architecture.from_config(qwen3)
    assert architecture.head_dim == 128
    assert round(architecture.parameters / 1e9, 2) == 0.60
    assert round(architecture.num_hidden_layers * architecture.layer_parameters / 1e9, 2) == 0.44
    implied = Architecture.from_config({key: value for key, value in qwen3.items() if key != "head_dim"})
    assert implied.head_dim == 64 and round(implied.parameters / 1e9, 2) == 0.51
