"""The reaper takes a process's children with it when that process is killed (SIGKILL), and stands down when
closed: real processes, no vLLM needed (tests/integration/test_rollout_vllm_reaper.py does it with vLLM)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import time

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


def _ended(process: psutil.Process) -> bool:
    """Exited: gone, or a zombie its parent has not waited for yet."""
    try:
        return process.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_sigterm_never_kills_the_reaper_before_it_reaps():
    """A SIGTERM (its parent's death signal, or anyone's) makes the reaper reap and exit, however many arrive and
    wherever they land: a handler that raised could land after the loop had ended and kill it unreaped."""
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=os.environ
    )
    assert holder.stdout is not None and holder.stderr is not None
    child = psutil.Process(int(holder.stdout.readline()))
    reaper = next(p for p in psutil.Process(holder.pid).children() if "tapo.engines.reaper" in " ".join(p.cmdline()))
    try:
        for _ in range(20):
            with contextlib.suppress(psutil.NoSuchProcess):
                reaper.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not all(map(_ended, (child, reaper))):
            time.sleep(0.1)
        assert _ended(child) and _ended(reaper)  # zombies of the live holder, which never waits for them
    finally:
        for process in (child, reaper):
            if not _ended(process):
                process.kill()
        holder.kill()
    assert "Traceback" not in holder.communicate(timeout=10)[1]


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
