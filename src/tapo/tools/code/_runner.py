"""Runs inside the sandbox: set resource limits, then execute the program read from stdin.

This file is passed to ``python -c`` as source text, so it imports only the standard library. The limits
are set here, in the process that will run the untrusted code, with hard = soft so the code cannot raise
them again; setting them in the parent through ``preexec_fn`` is not safe when the host has threads
(uvicorn, asyncio executors). When the sandbox starts as real root (bwrap without a user namespace), the
runner then drops to the unprivileged uid it is given: the kernel does not enforce RLIMIT_NPROC for root, and
a uid of its own per concurrent sandbox gives each one its own process count. The first traceback frame
(this runner) is dropped so the model sees only its own code in the error.

The interpreter starts with ``-S`` (no ``site``): the runner puts the site-packages directories it is given
(``path=``) on ``sys.path`` and installs ``exit``/``quit`` itself. Modules only some calls need (``ctypes`` as
root, ``traceback`` on an error) are imported when needed: every import here is paid on every call.
"""

import os
import resource
import sys

_LIMITS = {
    "cpu": resource.RLIMIT_CPU,
    "as": resource.RLIMIT_AS,
    "fsize": resource.RLIMIT_FSIZE,
    "nofile": resource.RLIMIT_NOFILE,
    "nproc": resource.RLIMIT_NPROC,
    "core": resource.RLIMIT_CORE,  # 0: a crash dumps no core (a host may pipe cores to a helper it then runs)
}


_PR_CAPBSET_DROP = 24
_LINUX_CAPABILITY_VERSION_3 = 0x20080522


def _drop_capability_bounds() -> None:
    """Empty the bounding set (bwrap keeps it full when it runs as root): no capability can ever come back,
    even through a binary with file capabilities. Needs CAP_SETPCAP, which bwrap keeps for this."""
    import ctypes
    import errno

    libc = ctypes.CDLL(None, use_errno=True)
    cap = 0
    while libc.prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0) == 0:  # EINVAL past the kernel's last capability
        cap += 1
    if ctypes.get_errno() != errno.EINVAL:
        raise OSError(ctypes.get_errno(), f"cannot drop capability {cap} from the bounding set")


def _clear_inheritable() -> None:
    """Zero the inheritable set too (the permitted and effective sets are already empty after setuid)."""
    import ctypes

    class Header(ctypes.Structure):
        _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]

    class Data(ctypes.Structure):
        _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.capset(ctypes.byref(Header(_LINUX_CAPABILITY_VERSION_3, 0)), (Data * 2)()) != 0:
        raise OSError(ctypes.get_errno(), "cannot clear the inheritable capabilities")


def _main() -> None:
    settings = dict(arg.split("=", 1) for arg in sys.argv[1:])
    uid = settings.pop("uid", None)
    sys.path.extend(p for p in settings.pop("path").split(os.pathsep) if p)
    for key, value in settings.items():
        # One CPU second of grace above the soft limit: SIGXCPU (a clear message) comes before SIGKILL.
        hard = int(value) + 1 if key == "cpu" else int(value)
        resource.setrlimit(_LIMITS[key], (int(value), hard))
    if uid is not None:
        _drop_capability_bounds()
        os.setgroups([])
        os.setgid(int(uid))
        os.setuid(int(uid))  # from root to another uid: the effective and permitted capabilities go
        _clear_inheritable()
    source = sys.stdin.read()
    sys.stdin.close()
    sys.argv = ["<code>"]
    import site  # with -S its import runs nothing; setquit gives the code the usual exit() and quit()

    site.setquit()
    namespace = {"__name__": "__main__", "__builtins__": __builtins__}
    try:
        exec(compile(source, "<code>", "exec"), namespace)
    except SystemExit:
        raise
    except BaseException as error:
        import traceback

        traceback.print_exception(type(error), error, error.__traceback__.tb_next)
        sys.stderr.flush()
        sys.exit(1)


_main()
