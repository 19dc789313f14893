"""The sandbox's seccomp filter: the kernel entry points a Python program never needs and an escape often does.

Namespaces, capabilities and uids stop a program from using what it reaches; this filter stops it from reaching more
kernel. Without it, ``unshare(CLONE_NEWUSER)`` hands the program a full capability set in a fresh user namespace,
where it can mount an uncapped tmpfs or reach nf_tables; the keyring carries data from one call to the next
(keyrings belong to a uid: without root every call runs as the same one); io_uring, bpf and perf_event_open are the
attack surface of most recent kernel privilege escalations. Sockets: only ``AF_UNIX`` (pipes between the program's
own processes: ``multiprocessing``, ``asyncio``, ``socketpair``). The network namespace leaves ``lo`` only, but some
families ignore it (``AF_VSOCK`` reaches the hypervisor's host on a VM, and a port bound in the sandbox is taken on
the host), and socket buffers of loopback TCP and UDP are charged to no cgroup on v1 (a call held 450 MB of the
host's socket memory against a 6 MB charge). inotify and fanotify watch files the host also uses (the interpreter's
tree): a view of host activity and a channel between concurrent calls. Each refused call fails with ``EPERM``
(``clone3`` with ``ENOSYS``: its flags sit in memory a filter cannot read, and glibc falls back to ``clone``, whose
flags it can), so the program sees an ordinary error. Everything else is allowed: CPython, numpy and sympy run
unchanged.

The filter is compiled by libseccomp (through the ctypes binding ``pyseccomp``) once per process into classic BPF,
which bwrap installs (``--seccomp FD``) just before it executes the runner; it applies to every process of the call.
Without libseccomp the sandbox runs without the filter after one warning that names what is then not refused.
"""

from __future__ import annotations

import errno
import functools
import logging
from types import ModuleType

log = logging.getLogger(__name__)

# Namespace flags of clone(2)/unshare(2). CLONE_NEWTIME (0x80) is unshare-only: in clone's flags those bits are
# the exit signal, and clone(2) cannot create a time namespace anyway.
_CLONE_NEW = {
    "CLONE_NEWNS": 0x00020000,
    "CLONE_NEWCGROUP": 0x02000000,
    "CLONE_NEWUTS": 0x04000000,
    "CLONE_NEWIPC": 0x08000000,
    "CLONE_NEWUSER": 0x10000000,
    "CLONE_NEWPID": 0x20000000,
    "CLONE_NEWNET": 0x40000000,
}
_CLONE_NEWTIME = 0x00000080
_AF_UNIX = 1
# Refused outright, by family (what the threat-model table in docs/tools.md lists).
REFUSED = {
    "namespaces": ("setns",),
    "mounts": (
        "mount",
        "umount2",
        "pivot_root",
        "move_mount",
        "open_tree",
        "fsopen",
        "fsconfig",
        "fsmount",
        "fspick",
        "mount_setattr",
        "open_tree_attr",
        "statmount",
        "listmount",
    ),
    "keyring": ("add_key", "request_key", "keyctl"),
    "io_uring": ("io_uring_setup", "io_uring_enter", "io_uring_register"),
    "kernel programs": ("bpf", "perf_event_open", "userfaultfd"),
    "other processes": ("ptrace", "process_vm_readv", "process_vm_writev"),
    "file watches": ("inotify_init", "inotify_init1", "inotify_add_watch", "fanotify_init", "fanotify_mark"),
    "kernel replacement": ("kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module"),
}


# System calls newer than the libseccomp a host may have (2.5 knows none of these): their number in the table that
# every architecture shares from 424 on (x86_64, aarch64, riscv64, ...; alpha, mips and ia64 add an offset, and
# there an unknown name is skipped with the rest of the filter intact).
_GENERIC_NUMBERS = {"statmount": 457, "listmount": 458, "open_tree_attr": 467}
_SHARED_TABLE_ARCHES = ("X86_64", "AARCH64", "RISCV64", "PPC64LE", "S390X", "ARM", "X86")


def _number(sc: ModuleType, name: str) -> int | None:
    """The syscall's number on this machine: libseccomp's, else the shared table's where the arch uses it."""
    number = sc.resolve_syscall(sc.Arch.NATIVE, name)
    if number >= 0:
        return number
    shared = {getattr(sc.Arch, arch, None) for arch in _SHARED_TABLE_ARCHES}
    return _GENERIC_NUMBERS.get(name) if sc.system_arch() in shared else None


def _build() -> bytes:
    """Compile the filter to BPF (raises ImportError/RuntimeError/OSError where libseccomp is missing or too old)."""
    import tempfile

    import pyseccomp as sc

    refuse = sc.ERRNO(errno.EPERM)
    f = sc.SyscallFilter(sc.ALLOW)  # unknown architectures (i386, x32 entry points) are killed by libseccomp
    for names in REFUSED.values():
        for name in names:
            number = _number(sc, name)
            if number is not None:
                f.add_rule(refuse, number)
    # One socket family: a domain other than AF_UNIX (compared over all 64 bits, so no upper-bit trick gets past).
    for call in ("socket", "socketpair"):
        f.add_rule(refuse, call, sc.Arg(0, sc.NE, _AF_UNIX))
    for flag in _CLONE_NEW.values():
        f.add_rule(refuse, "unshare", sc.Arg(0, sc.MASKED_EQ, flag, flag))
        f.add_rule(refuse, "clone", sc.Arg(0, sc.MASKED_EQ, flag, flag))
    f.add_rule(refuse, "unshare", sc.Arg(0, sc.MASKED_EQ, _CLONE_NEWTIME, _CLONE_NEWTIME))
    f.add_rule(sc.ERRNO(errno.ENOSYS), "clone3")
    # personality: only PER_LINUX (0) and the query (0xffffffff); the kernel reads the low 32 bits only. A 32-bit
    # value other than those has both a 1 and a 0 bit, hence (cyclically) a 1 followed by a 0: one rule per bit
    # pair says that, as libseccomp allows one comparison per argument and rule.
    for bit in range(32):
        pair = (1 << bit) | (1 << ((bit + 1) % 32))
        f.add_rule(refuse, "personality", sc.Arg(0, sc.MASKED_EQ, pair, 1 << bit))
    with tempfile.TemporaryFile() as out:
        f.export_bpf(out)
        out.seek(0)
        return out.read()


@functools.cache
def filter_bpf() -> bytes | None:
    """The compiled filter, built once per process; None (after one warning) where libseccomp cannot build it."""
    try:
        return _build()
    except (ImportError, RuntimeError, OSError) as error:
        refused = ", ".join(REFUSED)
        log.warning(
            "PYTHON SANDBOX HAS NO SECCOMP FILTER (%s: %s). Not refused: namespace creation (unshare/clone), socket "
            "families other than AF_UNIX, %s; install libseccomp2 and the pyseccomp package to refuse them.",
            type(error).__name__,
            error,
            refused,
        )
        return None
