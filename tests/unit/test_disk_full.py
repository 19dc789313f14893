"""Writes on a really full disk: a small tmpfs mounted in a user and mount namespace (``unshare -rm``, no root).

Covers issue 16 item 7: a full disk said ``basic_ios::clear: iostream error`` (or safetensors' own error)
instead of "No space left on device" and the path, and a failed checkpoint save left ``.step-N.tmp`` behind.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(180)

_MOUNT_THEN_RUN = 'mount -t tmpfs -o size="$1"k tmpfs "$2" || exit 77; shift 2; exec "$@"'


def on_a_small_disk(tmp_path: Path, size_kib: int, script: str, *args: str) -> tuple[Path, list[str]]:
    """Run ``script`` (its argv[1] is the mount point) with a ``size_kib`` tmpfs mounted; its output lines."""
    if shutil.which("unshare") is None:
        pytest.skip("no unshare(1) to mount a small file system")
    mount = tmp_path / "small"
    mount.mkdir()
    command = ["unshare", "-rm", "sh", "-c", _MOUNT_THEN_RUN, "sh", str(size_kib), str(mount)]
    done = subprocess.run(
        [*command, sys.executable, "-c", textwrap.dedent(script), str(mount), *args],
        capture_output=True,
        text=True,
        timeout=150,
    )
    if done.returncode == 77 or "unshare failed" in done.stderr:
        pytest.skip(f"cannot mount a tmpfs in a user namespace here: {done.stderr.strip()[-200:]}")
    assert done.returncode == 0, done.stderr[-2000:]
    return mount, done.stdout.splitlines()


def test_an_atomic_write_on_a_full_disk_names_the_file(tmp_path) -> None:
    script = """
        import sys
        from pathlib import Path
        from tapo.io.atomic import write_text
        from tapo.io.space import DiskFullError

        target = Path(sys.argv[1]) / "run" / "metrics.jsonl"
        try:
            write_text(target, "x" * 500_000)
        except DiskFullError as error:
            print(error)
        print(sorted(p.name for p in target.parent.iterdir()))
    """
    mount, lines = on_a_small_disk(tmp_path, 64, script)
    assert lines == [f"No space left on device: {mount}/run/metrics.jsonl", "[]"]


def test_a_checkpoint_save_on_a_full_disk_says_so_and_leaves_nothing(tmp_path, tiny_checkpoint) -> None:
    script = """
        import sys
        from pathlib import Path
        import torch
        from accelerate import Accelerator
        from tapo.config.schema import ModelConfig
        from tapo.io.space import DiskFullError
        from tapo.train.checkpoint import save_checkpoint
        from tapo.train.setup import load_policy

        torch.set_num_threads(1)
        model, tokenizer = load_policy(ModelConfig(name=sys.argv[2]))
        accelerator = Accelerator(cpu=True)
        model, optimizer = accelerator.prepare(model, torch.optim.AdamW(model.parameters()))
        checkpoints = Path(sys.argv[1]) / "checkpoints"
        try:
            save_checkpoint(accelerator, checkpoints, 3, model, tokenizer, {}, keep=2)
        except DiskFullError as error:
            print(error)
        print(sorted(p.name for p in checkpoints.iterdir()))
    """
    mount, lines = on_a_small_disk(tmp_path, 2048, script, tiny_checkpoint)
    assert lines[-2:] == [f"No space left on device: {mount}/checkpoints/step-3", "[]"]


def test_torchs_writer_on_a_full_disk_is_named_a_full_disk(tmp_path) -> None:
    """torch.save says only ``unexpected pos`` / ``basic_ios::clear``; the nearly empty disk tells what happened."""
    script = """
        import sys
        import torch
        from tapo.io.space import DiskFullError, naming_disk_full

        target = sys.argv[1] + "/optimizer.bin"
        try:
            with naming_disk_full(target, opaque=(RuntimeError,)):
                torch.save({"state": torch.zeros(100_000)}, target)
        except DiskFullError as error:
            print(error)
            print(type(error.__cause__).__name__)
    """
    mount, lines = on_a_small_disk(tmp_path, 64, script)
    assert lines == [f"No space left on device: {mount}/optimizer.bin", "RuntimeError"]
