"""A cgroup per sandbox call: one memory bound (no swap) and one process bound over all of the call's processes.

Rlimits are per process: a program under a 1 GiB address-space limit that forks six children holds six times
that, and memory a memfd or a tmpfs file holds is in no process's address space at all. A memory cgroup charges
all of it (anonymous pages, page cache, shmem: memfds and ``/tmp`` files) to the call, and when the call is over
its bound the kernel's OOM killer kills a process of the call, never the server. The pids controller bounds the
call's tasks whatever their uid.

Both hierarchies are supported, found once per process from ``/proc/self/cgroup`` and ``/proc/self/mounts``:

- cgroup v2: the call's cgroup is a child of this process's cgroup, which must have the ``memory`` and ``pids``
  controllers (a delegated subtree). If they are not yet enabled for its children and this process's cgroup holds
  processes (v2 forbids both at once), this process first moves itself into a leaf child, as nsjail does.
  Limits: ``memory.max``, ``memory.swap.max = 0``, ``pids.max``; ``memory.oom.group = 1``, so that going over
  the bound kills the whole call; an OOM kill shows in ``memory.events``.
- cgroup v1 (a hybrid layout: ``memory`` and ``pids`` hierarchies of their own): a child of this process's cgroup
  in each. Limits: ``memory.limit_in_bytes`` and, where swap accounting exists, ``memory.memsw.limit_in_bytes``
  set to the same value (no swap), ``pids.max``; the OOM killer kills the call's largest process (v1 has no
  group kill; the result still says the call went over); an OOM kill shows in ``memory.oom_control``.

The call's first process joins before it executes anything (:meth:`CallCgroup.join_argv`), so every process of
the call is born inside. A call cgroup is named after its server's pid *and start time*: a server restarted with the
same pid (pid 1 of a container, every time) must not meet the cgroups its killed predecessor left; those, and any
other whose owner is gone, are removed when a process first looks for its hierarchy (:meth:`Hierarchy.remove_stale`).
Elsewhere (no writable hierarchy with both controllers) :func:`find_hierarchy` returns None after one warning naming
what is then not bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import itertools
import logging
import os
import re
import signal
from pathlib import Path

log = logging.getLogger(__name__)

JOIN_FAILED = 125  # exit status of the join step when the call cannot enter its cgroup (nothing ran) ...
JOIN_MESSAGE = "tapo: the call cannot enter its cgroup"  # ... and what it writes to stderr
_CONTROLLERS = ("memory", "pids")
_REMOVE_TRIES = 40  # 1 ms doubling to 50 ms, ~1.7 s in all: processes of a call can take a moment to leave
_calls = itertools.count()
_NAME = re.compile(r"tapo-code-(\d+)-(?:(\d+)-)?\d+")  # pid, start time (absent in names before issue 27), call


def _start_time(pid: int | str) -> str | None:
    """A process's start time in clock ticks since boot (field 22 of its stat), None if there is no such process:
    with the pid, a name no other process has, before or after."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii")
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def _owner_alive(name: str) -> bool:
    """Whether the process a call cgroup is named after still runs (a name of another form is left alone)."""
    match = _NAME.fullmatch(name)
    if match is None:
        return True
    pid, start = match.group(1), match.group(2)
    if start is None:  # the old form, pid only: stale once that pid is gone, or is this process (never that form)
        return _start_time(pid) is not None and int(pid) != os.getpid()
    return _start_time(pid) == start


def _write(path: Path, value: str) -> None:
    path.write_text(value, encoding="ascii")


def _mounts() -> list[tuple[str, str, set[str]]]:
    """(mount point, fs type, options) of each cgroup mount of this process."""
    mounts = []
    for line in Path("/proc/self/mounts").read_text(encoding="utf-8").splitlines():
        fields = line.split()
        if len(fields) >= 4 and fields[2] in ("cgroup", "cgroup2"):
            mounts.append((fields[1].replace("\\040", " "), fields[2], set(fields[3].split(","))))
    return mounts


def _own_paths() -> dict[str, str]:
    """This process's cgroup per v1 controller, and per ``""`` in the v2 hierarchy."""
    paths: dict[str, str] = {}
    for line in Path("/proc/self/cgroup").read_text(encoding="utf-8").splitlines():
        _, controllers, path = line.split(":", 2)
        for controller in controllers.split(",") if controllers else [""]:
            paths[controller] = path
    return paths


@dataclasses.dataclass(frozen=True)
class Hierarchy:
    """Where call cgroups are created: one parent directory per hierarchy (one for v2, memory + pids for v1)."""

    version: int
    memory_parent: Path
    pids_parent: Path
    owner: str = dataclasses.field(default_factory=lambda: f"{os.getpid()}-{_start_time('self')}")

    def create(self, memory_bytes: int, max_pids: int) -> CallCgroup:
        """A fresh cgroup with the call's limits; the caller must :meth:`CallCgroup.remove` it."""
        name = f"tapo-code-{self.owner}-{next(_calls)}"
        dirs = (
            [self.memory_parent / name] if self.version == 2 else [self.memory_parent / name, self.pids_parent / name]
        )
        cgroup = CallCgroup(self.version, tuple(dirs))
        for directory in dirs:
            directory.mkdir()
        try:
            memory, pids = dirs[0], dirs[-1]
            if self.version == 2:
                _write(memory / "memory.max", str(memory_bytes))
                if (memory / "memory.swap.max").exists():
                    _write(memory / "memory.swap.max", "0")
                if (memory / "memory.oom.group").exists():  # an OOM kill takes the whole call, not one process
                    _write(memory / "memory.oom.group", "1")
            else:
                _write(memory / "memory.limit_in_bytes", str(memory_bytes))
                if (memory / "memory.memsw.limit_in_bytes").exists():
                    _write(memory / "memory.memsw.limit_in_bytes", str(memory_bytes))
            _write(pids / "pids.max", str(max_pids))
        except OSError:
            cgroup.remove_now()
            raise
        return cgroup

    def remove_stale(self) -> list[Path]:
        """Remove the call cgroups whose server is gone (killed with calls in flight), and return them. Only empty
        ones: the kernel refuses to remove a cgroup with a process in it, and nothing here kills a process."""
        removed = []
        for parent in {self.memory_parent, self.pids_parent}:
            for directory in parent.glob("tapo-code-*"):
                if _owner_alive(directory.name):
                    continue
                try:
                    directory.rmdir()
                    removed.append(directory)
                except OSError as error:
                    log.warning("could not remove the stale sandbox cgroup %s: %s", directory, error)
        return removed


@dataclasses.dataclass(frozen=True)
class CallCgroup:
    """One call's cgroup (a directory per hierarchy)."""

    version: int
    dirs: tuple[Path, ...]

    def join_argv(self, argv: list[str]) -> list[str]:
        """``argv`` behind a tiny shell step that moves itself into the cgroup, then executes ``argv``: the
        process is inside before anything of the call runs, and all its children are born inside. A failed
        join writes :data:`JOIN_MESSAGE` and exits with :data:`JOIN_FAILED` without running anything."""
        join = 'echo $$ >"$1" && shift && ' * len(self.dirs)
        script = f'{{ {join}:; }} 2>/dev/null || {{ echo "{JOIN_MESSAGE}" >&2; exit {JOIN_FAILED}; }}; exec "$@"'
        return ["/bin/sh", "-c", script, "sh", *(str(d / "cgroup.procs") for d in self.dirs), *argv]

    def memory_exceeded(self) -> bool:
        """Whether the kernel killed a process of the call for going over the memory bound."""
        name = "memory.events" if self.version == 2 else "memory.oom_control"
        with contextlib.suppress(OSError, ValueError):
            for line in (self.dirs[0] / name).read_text(encoding="ascii").splitlines():
                key, _, value = line.partition(" ")
                if key == "oom_kill":
                    return int(value) > 0
        return False

    def _kill_all(self) -> None:
        kill_file = self.dirs[0] / "cgroup.kill"  # v2, Linux 5.14+: the kernel kills the whole subtree at once
        if self.version == 2 and kill_file.exists():
            with contextlib.suppress(OSError):
                _write(kill_file, "1")
            return
        for directory in self.dirs:
            with contextlib.suppress(OSError):
                for pid in (directory / "cgroup.procs").read_text(encoding="ascii").split():
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.kill(int(pid), signal.SIGKILL)

    def remove_now(self) -> bool:
        """Kill what is left inside and remove the directories; False if a directory is still busy."""
        self._kill_all()
        removed = True
        for directory in self.dirs:
            try:
                directory.rmdir()
            except FileNotFoundError:
                pass
            except OSError:  # EBUSY while a killed process is still exiting
                removed = False
        return removed

    async def remove(self) -> None:
        """Remove the cgroup, waiting briefly for killed processes to leave it; a leftover is logged."""
        for attempt in range(_REMOVE_TRIES):
            if self.remove_now():
                return
            await asyncio.sleep(min(0.001 * 2**attempt, 0.05))
        log.warning("could not remove the sandbox cgroup %s: processes are still inside", self.dirs[0])


def _v2(mount: Path, own: str) -> Hierarchy | None:
    """The v2 parent (this process's cgroup) with memory and pids enabled for its children, or None."""
    parent = mount / own.lstrip("/")
    if not set(_CONTROLLERS) <= set((parent / "cgroup.controllers").read_text(encoding="ascii").split()):
        return None
    enable = " ".join(f"+{c}" for c in _CONTROLLERS)
    if not set(_CONTROLLERS) <= set((parent / "cgroup.subtree_control").read_text(encoding="ascii").split()):
        try:
            _write(parent / "cgroup.subtree_control", enable)
        except OSError:  # EBUSY: processes live in parent; move this one into a leaf and try once more
            leaf = parent / f"tapo-server-{os.getpid()}"
            leaf.mkdir(exist_ok=True)
            _write(leaf / "cgroup.procs", "0")
            _write(parent / "cgroup.subtree_control", enable)
    return Hierarchy(2, parent, parent)


def _v1(mounts: list[tuple[str, str, set[str]]], own: dict[str, str]) -> Hierarchy | None:
    points = {c: Path(p) / own[c].lstrip("/") for p, kind, opts in mounts if kind == "cgroup" for c in opts if c in own}
    if not all(c in points and os.access(points[c], os.W_OK) for c in _CONTROLLERS):
        return None
    return Hierarchy(1, points["memory"], points["pids"])


@functools.cache
def find_hierarchy() -> Hierarchy | None:
    """Where this process can create call cgroups with both controllers, or None after one warning."""
    reason = "no cgroup hierarchy with the memory and pids controllers is writable by this process"
    try:
        mounts, own = _mounts(), _own_paths()
        v2 = next((Path(p) for p, kind, _ in mounts if kind == "cgroup2"), None)
        found = _v2(v2, own[""]) if v2 is not None and "" in own else None
        found = found or _v1(mounts, own)
        if found is not None:  # a trial call cgroup: a read-only or full hierarchy fails here, not in every call
            found.remove_stale()
            found.create(64 * 2**20, 8).remove_now()
    except OSError as error:
        found, reason = None, f"{reason} ({error})"
    if found is None:
        log.warning(
            "PYTHON SANDBOX HAS NO PER-CALL CGROUP: %s. Not enforced: one memory bound over all of a call's "
            "processes, memfds and /tmp files (each process still has its address-space limit), and a process "
            "bound independent of the uid. Run as root or in a delegated cgroup v2 subtree to enforce them.",
            reason,
        )
    return found
