"""The reaper takes a process's children with it when that process is killed (SIGKILL), and stands down when
closed: real processes, no vLLM needed (tests/integration/test_rollout_vllm_reaper.py does it with vLLM)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import psutil
import pytest

from tapo.engines.reaper import ChildReaper

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the reaper needs Linux (prctl)")

# A parent like a trainer holding vLLM: it starts the reaper, then a child of its own that would outlive it.
HOLDER = textwrap.dedent(
    """
    import subprocess, sys, time
    from tapo.engines.reaper import ChildReaper

    reaper = ChildReaper()
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    reaper.refresh()  # the reaper's snapshot has the child
    print(child.pid, flush=True)
    time.sleep(600)
    """
)


def test_killed_parent_takes_its_children_with_it():
    holder = subprocess.Popen([sys.executable, "-c", HOLDER], stdout=subprocess.PIPE, text=True, env=os.environ)
    assert holder.stdout is not None
    child = psutil.Process(int(holder.stdout.readline()))
    reaper = next(p for p in psutil.Process(holder.pid).children() if "tapo.engines.reaper" in " ".join(p.cmdline()))
    try:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(10)
        _, alive = psutil.wait_procs([child, reaper], timeout=30)
        assert not alive, f"outlived the killed parent: {[p.cmdline() for p in alive]}"
    finally:
        for process in (child, reaper):
            if process.is_running():
                process.kill()


def test_closed_reaper_exits_and_spares_the_children():
    reaper = ChildReaper()
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        reaper.close()
        assert reaper.process is not None and reaper.process.returncode == 0
        assert child.poll() is None  # a clean close is not a death: nothing is touched
    finally:
        child.kill()
        child.wait()
