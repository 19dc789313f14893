from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError
from typer.testing import CliRunner

from tapo.cli.main import app
from tapo.config import ConfigError, TapoConfig, load_config, parse_overrides
from tapo.config.loader import build_config, dump_config
from tapo.config.migrate import DEPRECATED_KEYS, SFT_OWN_KEYS
from tapo.config.schema import (
    MINI_SIZES,
    RemoteCodeConfig,
    RolloutConfig,
    SandboxCodeConfig,
    Section,
    SftConfig,
    TrainerConfig,
    VLLMServerEngineConfig,
    section_model,
)
from tapo.data.mini import MiniSizes
from tapo.pipeline.profiles import load_profile

runner = CliRunner()


def test_overrides_parse_yaml_scalars():
    tree = parse_overrides(["trainer.lr=5e-6", "tools.enabled=[search]", "trainer.filter_groups=false"])
    assert tree == {"trainer": {"lr": 5e-6, "filter_groups": False}, "tools": {"enabled": ["search"]}}


def test_yaml_then_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("trainer:\n  lr: 1.0e-5\n  group_size: 8\nrun:\n  name: a\n")
    config = load_config(path, ["trainer.lr=2e-6"])
    assert config.trainer.lr == 2e-6
    assert config.trainer.group_size == 8
    assert config.run.name == "a"


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("trainer.lrr=1", "unknown config key 'trainer.lrr'; allowed keys here:"),
        ("trainer.lr=abc", "bad config value trainer.lr='abc'"),
        ("trainer.group_size=1", "bad config value trainer.group_size=1"),
        ("rollout.engine=tpu", "bad config value rollout.engine='tpu'"),
        ("nosection.x=1", "unknown config key 'nosection'"),
        ("trainer.micro_batch_size=3", "must be a multiple"),
    ],
)
def test_bad_config_is_one_line(override, expected):
    with pytest.raises(ConfigError) as info:
        load_config(None, [override])
    message = str(info.value)
    assert expected in message
    assert "\n" not in message


def test_batch_size_mismatch_names_the_keys_not_the_whole_section(tmp_path):
    """Issue 16 item 7: the error printed the whole trainer section (every key of the YAML file) on one line."""
    path = tmp_path / "c.yaml"
    path.write_text("trainer:\n  lr: 1.0e-5\n  group_size: 8\n  mini_batch_size: 6\n  micro_batch_size: 4\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value) == (
        "bad config trainer: trainer.mini_batch_size=6 must be a multiple of trainer.micro_batch_size=4"
    )


def _number_keys(section: type[Section], prefix: str) -> list[str]:
    """Every int or float key of the config tree (default backends), dotted."""
    keys = []
    for name, field in section.model_fields.items():
        if sub := section_model(field):
            keys += _number_keys(sub, f"{prefix}{name}.")
        elif field.annotation in (int, float, int | None, float | None):
            keys.append(prefix + name)
    return keys


def test_a_boolean_is_not_a_number_anywhere():
    """Issue 16 item 7: ``trainer.save_every=true`` was accepted as 1."""
    keys = _number_keys(TapoConfig, "")
    assert "trainer.save_every" in keys and len(keys) > 40
    for key in keys:
        with pytest.raises(ConfigError) as info:
            load_config(None, [f"{key}=true"])
        assert str(info.value) == f"bad config value {key}=True: expected a number, got the boolean true"
    assert load_config(None, ["trainer.bf16=true", "trainer.save_every=3"]).trainer.save_every == 3


@pytest.mark.parametrize("override", ["trainer.lrr=1", "trainer.lr=abc", "trainer.clip_low=-1"])
def test_cli_config_error_exit_code_2_and_nothing_written(tmp_path, override):
    result = runner.invoke(app, ["config", "show", f"run.output_dir={tmp_path / 'runs'}", override])
    assert result.exit_code == 2
    assert "error:" in result.output
    assert not (tmp_path / "runs").exists()


def test_cli_config_show_prints_resolved(tmp_path):
    result = runner.invoke(app, ["config", "show", "trainer.lr=3e-6"])
    assert result.exit_code == 0, result.output
    assert "lr: 3.0e-06" in result.output


def test_missing_config_file():
    with pytest.raises(ConfigError, match="does not exist"):
        load_config("/nonexistent.yaml")


# --- tagged backends and the deprecated flat keys -------------------------------------------------------------------

CONFIGS = sorted((Path(__file__).resolve().parents[2] / "configs").glob("*.yaml"))


def _attr(config: TapoConfig, dotted: str):
    value = config
    for part in dotted.split("."):
        value = getattr(value, part)
    return value


# old override(s) -> (new key, value it must hold), one row per mapping in DEPRECATED_KEYS
OLD_KEYS = [
    (["rollout.batch_size=8"], "rollout.engine.batch_size", 8),
    (["rollout.engine=hf"], "rollout.engine.kind", "transformers"),
    (["rollout.engine=vllm", "rollout.vllm_gpu_memory_utilization=0.3"], "rollout.engine.gpu_memory_utilization", 0.3),
    (["rollout.engine=vllm", "rollout.vllm_server_url=http://h:8000"], "rollout.engine.kind", "vllm-server"),
    (["rollout.engine=vllm", "rollout.vllm_server_url=http://h:8000"], "rollout.engine.url", "http://h:8000"),
    (
        ["rollout.engine=vllm", "rollout.vllm_server_url=http://h:8000", "rollout.vllm_server_weights_dir=/w"],
        "rollout.engine.weights_dir",
        "/w",
    ),
    (["tools.search.index_dir=/idx"], "tools.search.backend.index_dir", "/idx"),
    (["tools.search.backend=remote", "tools.search.url=http://r:1"], "tools.search.backend.url", "http://r:1"),
    (["tools.search.backend=serper", "tools.search.url=http://s"], "tools.search.backend.url", "http://s"),
    (["tools.search.backend=serper", "tools.search.api_key_env=K"], "tools.search.backend.api_key_env", "K"),
    (
        ["tools.search.backend=remote", "tools.search.url=http://r:1", "tools.search.remote_max_batch=4"],
        "tools.search.backend.max_batch",
        4,
    ),
    (
        ["tools.search.backend=remote", "tools.search.url=http://r:1", "tools.search.remote_batch_window_ms=2"],
        "tools.search.backend.batch_window_ms",
        2.0,
    ),
    (["eval.openai_api=chat"], "eval.openai.api", "chat"),
    (["eval.openai_api_key_env=MY_KEY"], "eval.openai.api_key_env", "MY_KEY"),
    (["eval.openai_timeout_s=7"], "eval.openai.timeout_s", 7.0),
    (["eval.openai_max_retries=1"], "eval.openai.max_retries", 1),
    (["eval.openai_max_concurrency=2"], "eval.openai.max_concurrency", 2),
    (["tools.code.url=http://c:1", "tools.code.backend=remote"], "tools.code", RemoteCodeConfig(url="http://c:1")),
    (["tools.code.backend=sandbox"], "tools.code", SandboxCodeConfig()),
]


def test_the_table_covers_every_deprecated_key():
    tested = {override.partition("=")[0] for overrides, _, _ in OLD_KEYS for override in overrides}
    dropped = {"data.strict", "rollout.engine.kv_cache_tokens"}  # no value moves: each has a test of its own
    plain = {old for old in DEPRECATED_KEYS if " " not in old and "=" not in old and old not in dropped}
    assert plain <= tested


def test_the_kv_positions_cap_gives_way_to_the_bytes_cap(tmp_path, caplog):
    """An old run directory's config holds kv_cache_tokens (every saved config had the default): it still loads."""
    config = load_config(None, ["rollout.engine.kv_cache_tokens=4096"])
    assert config.rollout.engine.kv_cache_gib == "auto"
    assert "rollout.engine.kv_cache_tokens is replaced by rollout.engine.kv_cache_gib" in caplog.text
    path = tmp_path / "old.yaml"
    path.write_text("rollout:\n  engine:\n    kind: transformers\n    kv_cache_tokens: 32768\n    kv_cache_gib: 0.5\n")
    assert load_config(path).rollout.engine.kv_cache_gib == 0.5
    with pytest.raises(ConfigError, match="kv_cache_gib"):
        load_config(None, ["rollout.engine.kv_cache_gib=0"])


@pytest.mark.parametrize(("overrides", "key", "value"), OLD_KEYS, ids=lambda v: v[-1] if isinstance(v, list) else "")
def test_old_keys_still_work_with_a_warning(overrides, key, value, tmp_path, caplog):
    config = load_config(None, overrides)
    assert _attr(config, key) == value
    old = overrides[-1].partition("=")[0]
    assert f"config key {old}" in caplog.text and "is deprecated" in caplog.text
    # the same keys in a YAML file
    caplog.clear()
    path = tmp_path / "old.yaml"
    path.write_text(yaml.safe_dump(parse_overrides(overrides)))
    assert _attr(load_config(path), key) == value
    assert "deprecated" in caplog.text


def test_an_old_key_applies_to_the_backend_configured_so_far(tmp_path, caplog):
    old_file = tmp_path / "old.yaml"
    old_file.write_text("rollout:\n  engine: hf\n  batch_size: 32\ntools:\n  search:\n    index_dir: /a\n")
    config = load_config(old_file, ["rollout.engine.batch_size=8", "tools.search.backend.index_dir=/b"])
    assert config.rollout.engine.batch_size == 8 and config.tools.search.backend.index_dir == "/b"  # later layer wins
    new_file = tmp_path / "new.yaml"
    new_file.write_text("rollout:\n  engine: {kind: vllm, gpu_memory_utilization: 0.4}\n")
    config = load_config(new_file, ["rollout.vllm_server_url=http://h:1", "rollout.vllm_server_weights_dir=/w"])
    assert config.rollout.engine == VLLMServerEngineConfig(url="http://h:1", weights_dir="/w")
    config = load_config(new_file, ["rollout.batch_size=8"])  # the vLLM engine has no batch size: dropped, said so
    assert config.rollout.engine.kind == "vllm" and "rollout.batch_size" in caplog.text


def test_old_server_url_without_vllm_is_one_line():
    with pytest.raises(ConfigError, match=r"vllm_server_url needs rollout\.engine=vllm") as info:
        load_config(None, ["rollout.vllm_server_url=http://127.0.0.1:8000"])
    assert "\n" not in str(info.value)


def test_data_strict_is_accepted_and_dropped(caplog):
    config = load_config(None, ["data.strict=true"])
    assert "strict" not in config.data.model_dump()
    assert "data.strict is deprecated and has no effect" in caplog.text


def test_a_backend_name_and_its_settings_combine_in_any_order():
    for overrides in (
        ["rollout.engine=vllm-server", "rollout.engine.url=http://h:1"],
        ["rollout.engine.url=http://h:1", "rollout.engine=vllm-server"],
    ):
        assert load_config(None, overrides).rollout.engine == VLLMServerEngineConfig(url="http://h:1")
    assert load_config(None, ["rollout.engine.batch_size=4"]).rollout.engine.batch_size == 4  # the default kind


def test_another_kind_replaces_the_earlier_backend(tmp_path):
    path = tmp_path / "server.yaml"
    path.write_text("rollout:\n  engine: {kind: vllm-server, url: http://h:1}\n")
    assert load_config(path, ["rollout.engine=vllm"]).rollout.engine.kind == "vllm"
    assert load_config(path, ["rollout.engine.kind=transformers"]).rollout.engine.batch_size == 64
    assert load_config(path, ["rollout.engine.weights_dir=/w"]).rollout.engine.url == "http://h:1"


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("rollout.engine.gpu_memory_utilization=0.3", "unknown config key 'rollout.engine.gpu_memory_utilization'"),
        ("tools.search.backend=remote", "missing config key 'tools.search.backend.url'"),
        ("tools.search.backend=elastic", "bad config value tools.search.backend='elastic'"),
    ],
)
def test_backend_errors_name_the_key(override, expected):
    with pytest.raises(ConfigError) as info:
        load_config(None, [override])
    assert expected in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_shipped_configs_load_without_deprecated_keys(path, caplog):
    load_config(path)
    assert "deprecated" not in caplog.text


@pytest.mark.parametrize("name", ["default", "long"])
def test_pipeline_profiles_load_without_deprecated_keys(name, caplog):
    profile = load_profile(name)
    load_config(None, [*profile.common, *profile.sft, *profile.rl])
    assert "deprecated" not in caplog.text
    assert profile.data.model_dump() == MINI_SIZES == asdict(MiniSizes())


def test_dumped_config_loads_back_unchanged():
    config = load_config(None, ["rollout.engine=vllm-server", "rollout.engine.url=http://h:1", "eval.openai.api=chat"])
    assert build_config(yaml.safe_load(dump_config(config))) == config


def test_sections_built_in_code_take_only_the_current_keys():
    """The loader rewrites old keys (tapo.config.migrate); the schema itself knows only the current tree."""
    with pytest.raises(ValidationError):
        RolloutConfig(batch_size=3)


def test_an_old_flat_code_section_drops_what_its_backend_never_read(tmp_path, caplog):
    """A run directory's config.yaml from before the tagged tools.code holds every key of the flat section."""
    old = {"backend": "remote", "url": "http://c:1", "timeout_s": 5.0, "memory_mb": 512, "require_isolation": True}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"tools": {"code": old}}))
    assert load_config(path).tools.code == RemoteCodeConfig(url="http://c:1", timeout_s=5.0)
    assert "tools.code.memory_mb, tools.code.require_isolation" in caplog.text
    path.write_text(yaml.safe_dump({"tools": {"code": {**old, "backend": "sandbox", "url": None}}}))
    assert load_config(path).tools.code == SandboxCodeConfig(timeout_s=5.0, memory_mb=512)
    with pytest.raises(ConfigError, match=r"unknown config key 'tools\.code\.memory_mb'"):  # the new form: no guessing
        load_config(None, ["tools.code=remote", "tools.code.url=http://c:1", "tools.code.memory_mb=512"])


def test_the_warm_start_has_its_own_copy_of_every_trainer_key_it_used_to_read():
    for old, new in SFT_OWN_KEYS.items():
        trainer_key, sft_key = old.removeprefix("trainer."), new.removeprefix("sft.")
        assert SftConfig.model_fields[sft_key].default == TrainerConfig.model_fields[trainer_key].default


# --- bounded inputs (issue 28): a config is measured before anything is expanded into memory ----------------------


def _alias_bomb(levels: int, width: int = 9) -> str:
    """``levels`` anchors, each a list of ``width`` aliases to the one before: width**levels strings from 400 bytes."""
    lines = [f"a0: &a0 [{', '.join(['lol'] * width)}]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * width)}]" for i in range(1, levels)]
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("field", ["run:\n  name: *a8\n", "model:\n  lora:\n    target_modules: *a8\n"])
def test_alias_bomb_is_refused_quickly_with_bounded_memory(tmp_path, field):
    """Issue 28: a 600-byte alias bomb under a string field passed 3 GB in 39 s; under a list field the error line
    echoed the whole expansion (312 MB)."""
    import time
    import tracemalloc

    path = tmp_path / "bomb.yaml"
    path.write_text(_alias_bomb(9) + field)  # 9**9 = 387 M strings once expanded
    tracemalloc.start()
    started = time.monotonic()
    try:
        with pytest.raises(ConfigError, match="aliases are expanded") as info:
            load_config(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert time.monotonic() - started < 5 and peak < 20 * 2**20
    assert "\n" not in str(info.value) and len(str(info.value)) < 300


def test_an_alias_bomb_in_an_override_is_refused():
    anchors = ["&a0 [x, x, x, x, x, x, x, x]"] + [f"&a{i} [{', '.join([f'*a{i - 1}'] * 8)}]" for i in range(1, 9)]
    bomb = f"[{', '.join(anchors)}]"
    with pytest.raises(ConfigError, match="aliases are expanded"):
        load_config(None, [f"model.lora.target_modules={bomb}"])


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("run:\n  name: " + "[" * 5000 + "]" * 5000 + "\n", "nesting deeper than"),
        ("run:\n  name: " + "x" * 100_000 + "\n", "a value of 100000 characters"),
        ("a: &a [*a]\n", "recursive"),
    ],
    ids=["deep", "long", "recursive"],
)
def test_deep_long_or_recursive_values_are_refused_in_one_short_line(tmp_path, text, expected):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=expected) as info:
        load_config(path)
    assert "\n" not in str(info.value) and len(str(info.value)) < 300


def test_a_bad_value_is_echoed_as_a_short_prefix(tmp_path):
    """A wrong value within the bounds is still too long for an error line: the line shows its start."""
    path = tmp_path / "c.yaml"
    path.write_text("run:\n  name: [" + ", ".join(f"name-{i}" for i in range(20_000)) + "]\n")
    with pytest.raises(ConfigError, match=r"bad config value run.name=\['name-0'") as info:
        load_config(path)
    assert len(str(info.value)) < 200


# --- paths (issue 28): a relative path in a config file is read against that file -----------------------------------


def test_paths_in_a_file_are_read_against_the_file_from_any_directory(tmp_path, monkeypatch):
    (tmp_path / "data" / "index").mkdir(parents=True)
    (tmp_path / "configs" / "accelerate").mkdir(parents=True)
    (tmp_path / "configs" / "accelerate" / "fsdp.yaml").write_text("num_processes: 8\n")
    config_file = tmp_path / "configs" / "c.yaml"
    config_file.write_text(
        "run: {accelerate_config: accelerate/fsdp.yaml}\n"
        "data: {train: ../data/train.jsonl, template: base}\n"
        "tools: {search: {backend: {kind: bm25, index_dir: ../data/index}}}\n"
        "model: {name: tiny-random}\n"
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    config = load_config(config_file)
    assert config.tools.search.backend.index_dir == str(tmp_path / "data" / "index")
    assert config.run.accelerate_config == str(tmp_path / "configs" / "accelerate" / "fsdp.yaml")
    assert config.data.train == str(tmp_path / "data" / "train.jsonl")  # not built yet: still against the file
    assert (config.model.name, config.data.template) == ("tiny-random", "base")  # names stay names
    assert config.run.output_dir == "runs"  # the default, named by no file: where the command runs
    # overrides are command-line paths: relative to the working directory, as given
    assert load_config(config_file, ["data.train=mine.jsonl"]).data.train == "mine.jsonl"


def test_a_path_that_exists_only_where_the_command_runs_still_loads(tmp_path, monkeypatch):
    """Configs written before (an old run's config.yaml) named paths against the working directory: kept."""
    (tmp_path / "data" / "index").mkdir(parents=True)
    run = tmp_path / "runs" / "old"
    run.mkdir(parents=True)
    (run / "config.yaml").write_text("tools: {search: {backend: {kind: bm25, index_dir: data/index}}}\n")
    monkeypatch.chdir(tmp_path)
    assert load_config(run / "config.yaml").tools.search.backend.index_dir == "data/index"


def test_what_a_run_records_has_absolute_paths(tmp_path, monkeypatch):
    from tapo.io.runs import run_config_text

    monkeypatch.chdir(tmp_path)
    (tmp_path / "my-template.yaml").write_text("")
    config = load_config(None, ["data.train=d/train.jsonl", "run.output_dir=runs", "data.template=my-template.yaml"])
    recorded = yaml.safe_load(run_config_text(config))
    assert recorded["data"]["train"] == str(tmp_path / "d" / "train.jsonl")
    assert recorded["run"]["output_dir"] == str(tmp_path / "runs")
    assert recorded["data"]["template"] == str(tmp_path / "my-template.yaml")
    assert recorded["model"]["name"] == "smollm2-135m-instruct"
