"""The supervised warm start: cross-entropy on mask-1 tokens only, a plain HF checkpoint at the end."""

from __future__ import annotations

import re

import pytest
import torch
from typer.testing import CliRunner

from tapo.cli.main import app
from tapo.config import load_config
from tapo.io.atomic import read_jsonl, write_jsonl, write_text
from tapo.io.runs import RunDir
from tapo.models.resolve import resolve_model
from tapo.records import Trajectory
from tapo.train.setup import load_policy, make_accelerator
from tapo.train.sft import Demo, DemoError, SftTrainer, load_demos

pytestmark = pytest.mark.usefixtures("one_thread")


def _demos(tokenizer, path, count: int = 8) -> None:
    rows = []
    for i in range(count):
        prompt = tokenizer(f"What is {i} plus one?")["input_ids"]
        model_part = tokenizer(f"<answer>{i + 1}</answer>", add_special_tokens=False)["input_ids"]
        tool_part = tokenizer("<response>noise</response>", add_special_tokens=False)["input_ids"]
        ids = tool_part + model_part
        rows.append(Trajectory(prompt, ids, [0] * len(tool_part) + [1] * len(model_part)).to_row())
    write_jsonl(path, rows)


def _overrides(tmp_path, tiny_checkpoint) -> list[str]:
    return [
        f"model.name={tiny_checkpoint}",
        f"run.output_dir={tmp_path}",
        "run.name=sft",
        "sft.lr=3e-3",
        "sft.epochs=4",
        "sft.batch_size=4",
        "sft.warmup_steps=0",
        "sft.micro_batch_size=2",
    ]


def test_sft_lowers_the_loss_and_writes_a_loadable_checkpoint(tmp_path, tokenizer, tiny_checkpoint) -> None:
    demos_file = tmp_path / "demos.jsonl"
    _demos(tokenizer, demos_file)
    config = load_config(None, _overrides(tmp_path, tiny_checkpoint))
    run = RunDir.create(config)
    model, tok = load_policy(config.model)
    trainer = SftTrainer(config, run, make_accelerator(config, run.root), model, tok, load_demos(demos_file))
    rows = trainer.fit()
    assert trainer.total_steps == 8 and len(rows) == 8
    assert rows[-1]["sft/loss"] < rows[0]["sft/loss"] - 1.0
    assert [r["step"] for r in read_jsonl(run.metrics_file)] == list(range(1, 9))
    assert resolve_model(str(run.root)) == str(run.checkpoints / "step-8" / "model")


def test_sft_loss_ignores_mask_zero_tokens(tmp_path, tokenizer, tiny_checkpoint) -> None:
    config = load_config(None, _overrides(tmp_path, tiny_checkpoint))
    run = RunDir.create(config)
    model, tok = load_policy(config.model)
    trainer = SftTrainer(config, run, make_accelerator(config, run.root), model, tok, [Demo([1, 2], [3], [1])])
    same = [Demo([1, 2], [3, 4, 5], [1, 0, 0]), Demo([1, 2], [3, 9, 9, 9], [1, 0, 0, 0])]
    losses = []
    for demo in same:
        trainer.optimizer.zero_grad()
        for group in trainer.optimizer.param_groups:
            group["lr"] = 0.0
        losses.append(trainer._batch_loss([demo])["sft/loss"])
    assert losses[0] == pytest.approx(losses[1], abs=1e-5)


def test_bad_demonstrations_fail_clearly(tmp_path, tiny_checkpoint) -> None:
    with pytest.raises(DemoError, match="does not exist"):
        load_demos(tmp_path / "missing.jsonl")
    bad = tmp_path / "bad.jsonl"
    write_jsonl(bad, [{"prompt_ids": [1], "response_ids": [2, 3], "model_mask": [1]}])
    with pytest.raises(DemoError, match=r"bad.jsonl:1"):
        load_demos(bad)
    result = CliRunner().invoke(app, ["sft", "--demos", str(bad), *_overrides(tmp_path, tiny_checkpoint)])
    assert result.exit_code == 2 and "bad.jsonl:1" in result.output


def test_sft_command_end_to_end(tmp_path, tokenizer, tiny_checkpoint) -> None:
    demos_file = tmp_path / "demos.jsonl"
    _demos(tokenizer, demos_file, count=4)
    args = ["sft", "--demos", str(demos_file), "--no-progress", *_overrides(tmp_path, tiny_checkpoint), "sft.epochs=1"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "sft" / "checkpoints" / "step-1" / "model" / "config.json").is_file()


def test_sft_sizes_come_from_sft_and_an_rl_key_on_its_command_line_is_refused(tmp_path, tiny_checkpoint) -> None:
    """SFT read four trainer.* keys, so profiles set trainer.micro_batch_size under `sft:` (issue 30)."""
    config = load_config(
        None, [*_overrides(tmp_path, tiny_checkpoint), "trainer.micro_batch_size=1", "trainer.weight_decay=0.5"]
    )
    run = RunDir.create(config)
    model, tok = load_policy(config.model)
    trainer = SftTrainer(config, run, make_accelerator(config, run.root), model, tok, [Demo([1], [2], [1])])
    assert trainer.scfg.micro_batch_size == 2 and trainer.optimizer.param_groups[0]["weight_decay"] == 0.1
    args = ["sft", "--demos", str(tmp_path / "none.jsonl"), *_overrides(tmp_path, tiny_checkpoint)]
    result = CliRunner().invoke(app, [*args, "trainer.micro_batch_size=8"])
    assert result.exit_code == 2
    assert "trainer.micro_batch_size sizes RL only" in result.output and "sft.micro_batch_size=8" in result.output


def test_trainable_layers_freezes_everything_below_the_top_layers(tmp_path, tokenizer, tiny_checkpoint) -> None:
    demos_file = tmp_path / "demos.jsonl"
    _demos(tokenizer, demos_file)
    config = load_config(None, [*_overrides(tmp_path, tiny_checkpoint), "model.trainable_layers=1", "sft.epochs=1"])
    run = RunDir.create(config)
    model, tok = load_policy(config.model)
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(name.startswith(("model.layers.1.", "model.norm.")) for name in trainable)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    SftTrainer(config, run, make_accelerator(config, run.root), model, tok, load_demos(demos_file)).fit()
    changed = {name for name, p in model.named_parameters() if not torch.equal(p, before[name])}
    assert changed and changed <= trainable
    with pytest.raises(ValueError, match="has 2 layers"):
        load_policy(load_config(None, [f"model.name={tiny_checkpoint}", "model.trainable_layers=3"]).model)


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ('{"prompt_ids": [1, 2], "response_ids": [3', "invalid JSON"),
        ('{"prompt_ids": [1, "2"], "response_ids": [3], "model_mask": [1]}', "prompt_ids[1] is '2', not an integer"),
        ('{"prompt_ids": [1, 2], "response_ids": [3.0], "model_mask": [1]}', "response_ids[0] is 3.0, not an integer"),
        ('{"prompt_ids": [1, 2], "response_ids": [49152], "model_mask": [1]}', "outside the tokenizer's vocabulary"),
        ('{"prompt_ids": [-1], "response_ids": [3], "model_mask": [1]}', "prompt_ids[0]=-1 is outside"),
        ('{"prompt_ids": [1], "response_ids": [3], "model_mask": [2]}', "model_mask entries must be 0 or 1"),
        ('{"prompt_ids": [1], "response_ids": "3", "model_mask": [1]}', "response_ids must be a list"),
        ("[1, 2, 3]", "expected a JSON object"),
    ],
)
def test_each_demonstration_line_is_validated_and_named(tmp_path, tiny_checkpoint, line, expected) -> None:
    demos = tmp_path / "demos.jsonl"
    write_text(demos, '{"prompt_ids": [1, 2], "response_ids": [3], "model_mask": [1]}\n\n' + line + "\n")
    with pytest.raises(DemoError, match=rf"demos.jsonl:3: .*{re.escape(expected)}"):
        load_demos(demos, vocab_size=49152)
    result = CliRunner().invoke(app, ["sft", "--demos", str(demos), *_overrides(tmp_path, tiny_checkpoint)])
    assert result.exit_code == 2 and "demos.jsonl:3:" in result.output and expected in result.output, result.output
    assert len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "sft").exists()


def test_sft_after_a_restart_logs_each_step_once(tmp_path, tokenizer, tiny_checkpoint) -> None:
    demos_file = tmp_path / "demos.jsonl"
    _demos(tokenizer, demos_file, count=4)
    write_jsonl(tmp_path / "sft" / "metrics.jsonl", [{"step": 1.0}, {"step": 2.0}])  # an interrupted attempt
    args = ["sft", "--demos", str(demos_file), "--no-progress", *_overrides(tmp_path, tiny_checkpoint), "sft.epochs=1"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert [r["step"] for r in read_jsonl(tmp_path / "sft" / "metrics.jsonl")] == [1]
    again = CliRunner().invoke(app, args)  # a finished warm start is not overwritten
    assert again.exit_code == 2 and "already has a finished warm start" in again.output


def test_rows_written_before_model_mask_was_named_still_read(tmp_path) -> None:
    """Earlier files call the mask ``loss_mask``: demonstrations and trajectories still load, under today's name."""
    old = {"prompt_ids": [1, 2], "response_ids": [3, 4, 5], "loss_mask": [1, 0, 1]}
    write_jsonl(tmp_path / "demos.jsonl", [old])
    assert load_demos(tmp_path / "demos.jsonl")[0].loss_mask == [1, 0, 1]
    row = Trajectory(
        prompt_ids=[1, 2], response_ids=[3, 4, 5], model_mask=[1, 0, 1], logprobs=[0.0, None, 0.0]
    ).to_row()
    row["loss_mask"] = row.pop("model_mask")
    assert Trajectory.from_row(row).model_mask == [1, 0, 1]


def test_a_demonstration_longer_than_the_budget_is_cut_or_skipped_in_one_line(tmp_path, caplog) -> None:
    """Issue 28: one 8 M-token demonstration passed 3.3 GB in `tapo sft`; training cuts a prompt to its budget."""
    import tracemalloc

    from tapo.train.sft import DemoLengths

    demos = tmp_path / "demos.jsonl"
    fits = {"prompt_ids": [1, 2, 3], "response_ids": [4, 5], "model_mask": [1, 1]}
    long_prompt = {"prompt_ids": list(range(1, 101)), "response_ids": [4, 5], "model_mask": [1, 1]}
    long_response = {"prompt_ids": [1], "response_ids": [4] * 40, "model_mask": [1] * 40}
    write_jsonl(demos, [fits, long_prompt, long_response])
    with demos.open("a") as handle:  # 2 M tokens on one line: skipped unread
        handle.write('{"prompt_ids": [1], "response_ids": [' + "4, " * 2_000_000 + '4], "model_mask": []}\n')
    tracemalloc.start()
    try:
        with caplog.at_level("WARNING", logger="tapo.train.sft"):
            loaded = load_demos(demos, lengths=DemoLengths(max_prompt_tokens=16, max_response_tokens=32))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert [len(d.prompt_ids) for d in loaded] == [3, 16] and loaded[1].prompt_ids[-1] == 100
    assert peak < 8 * 2**20  # the 6 MB line is never held whole, nor parsed
    (line,) = [r.getMessage() for r in caplog.records]
    assert "1 prompts over data.max_prompt_tokens=16 cut to their last 16 tokens" in line
    assert "2 demonstrations over rollout.max_response_tokens=32 skipped (first: line 3, 40 response tokens)" in line


def test_sft_refuses_a_warm_start_over_the_memory_available_before_loading_the_model(
    tmp_path, tokenizer, tiny_checkpoint, monkeypatch
) -> None:
    """The same pre-flight estimate as `tapo train` (weights, gradients, AdamW, one micro-batch of the longest
    demonstration) against a forced 0.1 GiB: one line naming the setting to lower, exit 2, no model loaded."""
    import tapo.train.setup

    def no_load(*args, **kwargs):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(tapo.train.setup, "load_policy", no_load)
    monkeypatch.setenv("TAPO_MEMORY_GIB", "0.1")
    demos_file = tmp_path / "demos.jsonl"
    _demos(tokenizer, demos_file, count=4)
    result = CliRunner().invoke(app, ["sft", "--demos", str(demos_file), *_overrides(tmp_path, tiny_checkpoint)])
    assert result.exit_code == 2, result.output
    line = " ".join(result.output.split())
    assert line.startswith("error: memory: this CPU run needs about") and line.count("memory:") == 1
    assert re.search(r"over the 0\.1 GiB available; lower (sft\.micro_batch_size|trainer\.logprob_chunk_tokens)", line)
    assert not (tmp_path / "sft").exists()


def test_the_sft_estimate_grows_with_its_micro_batch_and_has_no_engine(tmp_path, tiny_checkpoint) -> None:
    from tapo.models.resolve import read_architecture
    from tapo.train.plan import cpu_peak, sft_memory_estimate

    architecture, _ = read_architecture(tiny_checkpoint)

    def estimate(micro: int) -> dict:
        overrides = [*_overrides(tmp_path, tiny_checkpoint), "sft.batch_size=8", f"sft.micro_batch_size={micro}"]
        config = load_config(None, overrides)
        return sft_memory_estimate(config, architecture, 600)

    small, large = estimate(1), estimate(8)
    assert cpu_peak(large) > cpu_peak(small)
    assert not any("KV" in name or "sampling copy" in name for name in large)
    assert "activations (8 x 600 tokens" in " ".join(large)


def _gradients_and_row(tmp_path, tiny_checkpoint, monkeypatch, demos: list[Demo], buckets: bool):
    """The gradients one batch of ``demos`` accumulates (taken where the optimizer would step) and its metrics."""
    import tapo.train.sft as sft_module

    overrides = [*_overrides(tmp_path / str(buckets), tiny_checkpoint), f"sft.length_buckets={str(buckets).lower()}"]
    config = load_config(None, overrides)
    run = RunDir.create(config)
    model, tok = load_policy(config.model)
    trainer = SftTrainer(config, run, make_accelerator(config, run.root), model, tok, demos)
    grads: list[torch.Tensor] = []

    def keep_gradients(accelerator, model, optimizer, max_norm) -> float:
        grads.extend(p.grad.clone() for p in model.parameters() if p.grad is not None)
        return 0.0

    monkeypatch.setattr(sft_module, "optimizer_step", keep_gradients)
    row = trainer._batch_loss(demos)
    return grads, row


@pytest.mark.filterwarnings("ignore:Detected call of `lr_scheduler.step\\(\\)` before")  # no optimizer step here
def test_length_buckets_cut_padding_and_give_the_same_gradient(tmp_path, tiny_checkpoint, monkeypatch) -> None:
    # long, short, long, short: in arrival order each micro-batch of 2 pads a short one to a long one's width
    lengths = [40, 3, 38, 2]
    demos = [Demo([1, 2, 3], [5 + (i % 7) for i in range(n)], [1] * n) for n in lengths]
    plain, plain_row = _gradients_and_row(tmp_path, tiny_checkpoint, monkeypatch, demos, buckets=False)
    bucketed, bucketed_row = _gradients_and_row(tmp_path, tiny_checkpoint, monkeypatch, demos, buckets=True)
    assert plain
    # real positions 3 + n each (95 in all): 2 x 43 + 2 x 41 run in order, 2 x 6 + 2 x 43 sorted
    assert plain_row["sft/pad_frac"] == pytest.approx(1 - 95 / 168)
    assert bucketed_row["sft/pad_frac"] == pytest.approx(1 - 95 / 98)
    assert bucketed_row["sft/loss"] == pytest.approx(plain_row["sft/loss"], rel=1e-5)
    largest = max(float(g.abs().max()) for g in plain)
    for a, b in zip(plain, bucketed, strict=True):
        torch.testing.assert_close(a, b, atol=1e-6 * largest + 1e-7, rtol=1e-5)
