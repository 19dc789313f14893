from __future__ import annotations

from tapo.models.resolve import resolve_model


def test_tiny_model_generates(tiny_model, tokenizer):
    ids = tokenizer("hello", return_tensors="pt")
    out = tiny_model.generate(**ids, max_new_tokens=5, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    assert out.shape[1] == ids["input_ids"].shape[1] + 5
    assert sum(p.numel() for p in tiny_model.parameters()) < 5_000_000


def test_resolve_checkpoint_dir(tiny_checkpoint):
    assert resolve_model(tiny_checkpoint) == tiny_checkpoint


def test_resolve_hub_id_passes_through():
    assert resolve_model("Qwen/Qwen2.5-3B-Instruct") == "Qwen/Qwen2.5-3B-Instruct"


def test_resolve_run_dir_uses_latest_checkpoint(tmp_path, tiny_checkpoint):
    import shutil

    for step in (2, 10):
        shutil.copytree(tiny_checkpoint, tmp_path / "checkpoints" / f"step-{step}" / "model")
    assert resolve_model(str(tmp_path)).endswith("step-10/model")
