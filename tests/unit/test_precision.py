"""``if_native`` precision settings: bf16 where the hardware computes it, float32 where bf16 would be emulated."""

from __future__ import annotations

import pytest
from accelerate.state import AcceleratorState

from tapo.config import load_config, precision
from tapo.config.precision import autocast_bf16, cpu_flags, engine_dtype, native_bf16
from tapo.train.mismatch import resolve_correction
from tapo.train.setup import make_accelerator

X86_AVX2 = "processor\t: 0\nvendor_id\t: AuthenticAMD\nflags\t\t: fpu sse2 avx avx2 fma avx512f avx512bw\n"
X86_BF16 = "processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512_bf16 avx512_vnni\n"
ARM_BF16 = "processor\t: 0\nFeatures\t: fp asimd sve bf16 i8mm\n"


@pytest.mark.parametrize(
    ("cpuinfo", "native"), [(X86_AVX2, False), (X86_BF16, True), (ARM_BF16, True), ("processor\t: 0\n", False)]
)
def test_the_cpu_flags_decide_whether_bf16_is_native(tmp_path, cpuinfo, native):
    path = tmp_path / "cpuinfo"
    path.write_text(cpuinfo)
    assert native_bf16(cpu_flags(path), gpu=False) is native


def test_amx_alone_counts_and_avx512_without_bf16_does_not():
    assert native_bf16({"amx_bf16", "amx_tile"}, gpu=False)
    assert not native_bf16({"avx512f", "avx512bw", "avx512_vnni"}, gpu=False)


def test_a_missing_cpuinfo_is_no_flags(tmp_path):
    assert cpu_flags(tmp_path / "absent") == frozenset()


@pytest.fixture
def bf16_cpu(monkeypatch):
    """Pretend this machine's CPU has (``True``) or lacks (``False``) native bf16."""

    def pretend(native: bool) -> None:
        flags = frozenset({"avx512_bf16"} if native else {"avx2"})
        monkeypatch.setattr(precision, "cpu_flags", lambda *_: flags)
        monkeypatch.setattr("torch.cuda.is_available", lambda: False)

    return pretend


@pytest.mark.parametrize("native", [True, False])
def test_if_native_settings_resolve_by_the_hardware_and_explicit_ones_as_written(bf16_cpu, native):
    bf16_cpu(native)
    assert autocast_bf16("if_native") is native
    assert engine_dtype("bfloat16_if_native") == ("bfloat16" if native else "auto")
    assert autocast_bf16(True) and not autocast_bf16(False)
    assert [engine_dtype(d) for d in ("auto", "float32", "bfloat16")] == ["auto", "float32", "bfloat16"]
    # vLLM's auto would sample an fp32 checkpoint in bf16: where bf16 is emulated it is asked for float32
    assert engine_dtype("bfloat16_if_native", emulated="float32") == ("bfloat16" if native else "float32")
    written = ("auto", "float16", "bfloat16")
    assert [engine_dtype(d, emulated="float32") for d in written] == list(written)


@pytest.mark.parametrize("native", [True, False])
def test_the_run_follows_the_decision(bf16_cpu, tmp_path, native):
    """Autocast of the accelerator, and the rollout correction (a bf16 copy samples: token TIS; the trainer's own
    float32 model samples: none)."""
    bf16_cpu(native)
    config = load_config(
        None, ["trainer.bf16=if_native", "rollout.engine.dtype=bfloat16_if_native", "model.name=tiny-random"]
    )
    assert config.trainer.bf16 == "if_native"  # the config keeps the setting: another machine decides again
    AcceleratorState._reset_state(True)  # one accelerator per process: this test makes one per case
    try:
        assert make_accelerator(config, tmp_path).mixed_precision == ("bf16" if native else "no")
    finally:
        AcceleratorState._reset_state(True)
    assert resolve_correction(config) == ("token_tis" if native else "none")


def test_a_bad_value_is_refused():
    with pytest.raises(Exception, match="bf16"):
        load_config(None, ["trainer.bf16=sometimes"])
