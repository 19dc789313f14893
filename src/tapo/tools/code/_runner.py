"""Runs inside the sandbox: set resource limits, then execute the program read from stdin.

This file is passed to ``python -c`` as source text, so it imports only the standard library. The limits
are set here, in the process that will run the untrusted code, with hard = soft so the code cannot raise
them again; setting them in the parent through ``preexec_fn`` is not safe when the host has threads
(uvicorn, asyncio executors). When the sandbox starts as real root (bwrap without a user namespace), the
runner then drops to the unprivileged uid it is given: the kernel does not enforce RLIMIT_NPROC for root, and
a uid of its own per concurrent sandbox gives each one its own process count. The first traceback frame
(this runner) is dropped so the model sees only its own code in the error.
"""

import os
import resource
import sys
import traceback

_LIMITS = {
    "cpu": resource.RLIMIT_CPU,
    "as": resource.RLIMIT_AS,
    "fsize": resource.RLIMIT_FSIZE,
    "nofile": resource.RLIMIT_NOFILE,
    "nproc": resource.RLIMIT_NPROC,
}


def _main() -> None:
    settings = dict(arg.split("=", 1) for arg in sys.argv[1:])
    uid = settings.pop("uid", None)
    for key, value in settings.items():
        # One CPU second of grace above the soft limit: SIGXCPU (a clear message) comes before SIGKILL.
        hard = int(value) + 1 if key == "cpu" else int(value)
        resource.setrlimit(_LIMITS[key], (int(value), hard))
    if uid is not None:
        os.setgroups([])
        os.setgid(int(uid))
        os.setuid(int(uid))  # from root to another uid: every capability is gone, for good
    source = sys.stdin.read()
    sys.stdin.close()
    sys.argv = ["<code>"]
    namespace = {"__name__": "__main__", "__builtins__": __builtins__}
    try:
        exec(compile(source, "<code>", "exec"), namespace)
    except SystemExit:
        raise
    except BaseException as error:
        traceback.print_exception(type(error), error, error.__traceback__.tb_next)
        sys.stderr.flush()
        sys.exit(1)


_main()
