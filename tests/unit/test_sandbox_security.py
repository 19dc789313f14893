"""Security guards of the Python sandbox: each test fails if the guard it names is removed.

Every test also checks, through the ``no_leftovers`` fixture, that no process started by the call survives it.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time

import psutil
import pytest

from tapo.config.schema import CodeConfig
from tapo.tools.code.sandbox import PythonSandbox

TIMEOUT_S = 2.0
SLACK_S = 2.5  # start-up and reaping on a loaded 2-core machine

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def sandbox() -> PythonSandbox:
    box = PythonSandbox(CodeConfig(timeout_s=TIMEOUT_S, cpu_seconds=10, memory_mb=512, max_processes=32))
    if not box.isolated:
        pytest.skip("bubblewrap cannot create namespaces on this machine")
    return box


@pytest.fixture(autouse=True)
def no_leftovers():
    """After each test: no child, grandchild or re-parented sandbox process of this test run remains."""
    before = {p.pid for p in psutil.process_iter()}
    yield
    time.sleep(0.2)
    me = psutil.Process()
    survivors = [p for p in me.children(recursive=True) if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    new = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        cmdline = " ".join(proc.info["cmdline"] or [])
        if proc.info["pid"] not in before and ("tapo-marker" in cmdline or "bwrap" in cmdline):
            new.append(proc)
    assert not survivors and not new, f"processes left behind: {survivors + new}"


def run(sandbox: PythonSandbox, code: str):
    return asyncio.run(sandbox.run(code))


def test_network_connect_is_blocked(sandbox):
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.5)
    port = listener.getsockname()[1]
    code = f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=1)\nprint('connected')"
    result = run(sandbox, code)
    with pytest.raises(TimeoutError):
        listener.accept()  # the host listener never sees a connection
    listener.close()
    assert "connected" not in result.stdout
    assert result.exit_code == 1 and ("ConnectionRefused" in result.stderr_tail or "OSError" in result.stderr_tail)


def test_host_secret_file_cannot_be_read(sandbox, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("TOPSECRET-42")
    result = run(sandbox, f"print(open({str(secret)!r}).read())")
    assert "TOPSECRET-42" not in result.stdout
    assert "FileNotFoundError" in result.stderr_tail


def test_host_environment_is_scrubbed(sandbox, monkeypatch):
    monkeypatch.setenv("TAPO_TEST_TOKEN", "hunter2")
    result = run(sandbox, "import os; print(sorted(os.environ.items()))")
    assert result.exit_code == 0 and "hunter2" not in result.stdout


def test_writes_outside_the_working_dir_fail(sandbox, tmp_path):
    code = (
        "import os\n"
        "open('inside.txt', 'w').write('ok'); print('inside', os.getcwd())\n"
        f"for path in ['/usr/evil', '/evil', {str(sys.prefix)!r} + '/evil', {str(tmp_path / 'evil')!r}]:\n"
        "    try:\n"
        "        open(path, 'w').write('x'); print('WROTE', path)\n"
        "    except OSError as e:\n"
        "        print('refused', type(e).__name__)\n"
    )
    result = run(sandbox, code)
    assert "inside /tmp" in result.stdout
    assert "WROTE" not in result.stdout and result.stdout.count("refused") == 4
    assert not (tmp_path / "evil").exists() and not os.path.exists(os.path.join(sys.prefix, "evil"))


def test_calls_share_no_files(sandbox):
    assert run(sandbox, "open('state.txt', 'w').write('1'); print('written')").stdout.strip() == "written"
    result = run(sandbox, "import os; print(os.path.exists('state.txt'))")
    assert result.stdout.strip() == "False"


def test_fork_bomb_hits_the_process_limit(sandbox):
    code = (
        "import os, time\n"
        "n = 0\n"
        "try:\n"
        "    while n < 2000:\n"
        "        if os.fork() == 0:\n"
        "            time.sleep(60); os._exit(0)\n"
        "        n += 1\n"
        "except OSError:\n"
        "    pass\n"
        "print('forked', n)\n"
    )
    start = time.perf_counter()
    result = run(sandbox, code)
    assert time.perf_counter() - start < TIMEOUT_S + SLACK_S
    forked = int(result.stdout.split()[-1])
    assert forked < 32, result.stdout  # RLIMIT_NPROC stopped it; the sleeping children died with the sandbox


def test_memory_bomb_gets_memory_error(sandbox):
    result = run(sandbox, "b = bytearray(2 * 1024**3)\nprint('allocated', len(b))")
    assert "allocated" not in result.stdout and "MemoryError" in result.stderr_tail


def test_infinite_loop_is_killed_at_the_wall_clock_timeout(sandbox):
    start = time.perf_counter()
    result = run(sandbox, "import time\nprint('started')\nwhile True:\n    time.sleep(0.01)")
    elapsed = time.perf_counter() - start
    assert result.timed_out and result.exit_code is None
    assert "started" in result.stdout  # unbuffered: output before the kill is kept
    assert TIMEOUT_S <= elapsed < TIMEOUT_S + SLACK_S


def test_cpu_limit_kills_a_busy_loop():
    box = PythonSandbox(CodeConfig(timeout_s=20, cpu_seconds=1))
    start = time.perf_counter()
    result = asyncio.run(box.run("while True:\n    pass"))
    assert not result.timed_out and result.exit_code == 128 + 24  # SIGXCPU, well before the 20 s wall clock
    assert time.perf_counter() - start < 10


def test_huge_output_is_bounded_on_the_host(sandbox):
    result = run(sandbox, "import sys\nfor _ in range(200):\n    sys.stdout.write('x' * 100_000)\nprint('END')")
    assert result.stdout_bytes > 20_000_000
    assert result.retained_bytes <= 20_000  # the host kept head and tail only
    assert result.stdout.startswith("xxx") and result.stdout.rstrip().endswith("END")


def test_endless_output_is_stopped_by_the_timeout(sandbox):
    start = time.perf_counter()
    result = run(sandbox, "while True:\n    print('y' * 1000)")
    assert result.timed_out and time.perf_counter() - start < TIMEOUT_S + SLACK_S
    assert result.retained_bytes <= 20_000


def test_killing_host_processes_is_impossible(sandbox):
    victim = subprocess.Popen(["sleep", "30"])
    try:
        code = (
            "import os, signal\n"
            f"for pid in ({victim.pid}, {os.getpid()}, os.getppid(), 1):\n"
            "    try:\n"
            "        os.kill(pid, signal.SIGKILL); print('sent', pid)\n"
            "    except OSError as e:\n"
            "        print('denied', pid, type(e).__name__)\n"
            "print('alive')\n"
        )
        result = run(sandbox, code)
        assert victim.poll() is None  # the host process survived
        assert f"denied {victim.pid}" in result.stdout
    finally:
        victim.kill()
        victim.wait()


def test_background_child_does_not_outlive_the_call(sandbox):
    code = (
        "import os\n"
        "if os.fork() == 0:\n"
        "    os.setsid()\n"
        "    if os.fork() == 0:\n"
        "        os.execvp('sleep', ['sleep', '60', 'tapo-marker'])\n"
        "    os._exit(0)\n"
        "print('parent done')\n"
    )
    start = time.perf_counter()
    result = run(sandbox, code)
    assert result.exit_code == 0 and "parent done" in result.stdout
    assert time.perf_counter() - start < TIMEOUT_S  # returned without waiting for the daemon
    # no_leftovers checks that the daemonized `sleep ... tapo-marker` is gone


def test_no_capability_is_left_in_any_set(sandbox):
    """Effective, permitted, inheritable, ambient and bounding sets all empty, and no privileges through exec."""
    result = run(sandbox, "print(open('/proc/self/status').read())")
    status = dict(line.split(":\t", 1) for line in result.stdout.splitlines() if ":\t" in line)
    for key in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
        assert int(status[key], 16) == 0, f"{key} = {status[key]}"
    assert status["NoNewPrivs"].strip() == "1" and status["Uid"].split()[0] != "0"
