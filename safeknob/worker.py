"""Pool workers end with their parent (stdlib only, so it runs first in a worker).

A spawned worker re-imports the parent's main module (the CLI, which imports every stage,
torch and imitation: seconds) before its pool initializer runs. A parent killed in that
window would leave the worker training in the background, so :mod:`safeknob.parallel` names
itself in ``$SAFEKNOB_POOL_PARENT`` and importing :mod:`safeknob` (the first thing the worker
imports) arms the death signal at once.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

PARENT_ENV = "SAFEKNOB_POOL_PARENT"
"""Environment variable holding the pid of the process that started the pool."""


def die_with_parent(parent_pid: int | None = None) -> None:
    """On Linux, end this process (SIGTERM) when its parent dies; elsewhere a no-op. With
    ``parent_pid``, a process whose parent already died (re-parented) exits at once."""
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL("libc.so.6", use_errno=True)
            libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
        except OSError:
            pass
    if parent_pid is not None and os.getppid() != parent_pid:
        os._exit(1)


def arm_if_pool_worker() -> None:
    """Called on ``import safeknob``: in a spawned multiprocessing worker of a safeknob pool
    (``$SAFEKNOB_POOL_PARENT`` names another process), die with the parent."""
    parent = os.environ.get(PARENT_ENV, "")
    spawned = "--multiprocessing-fork" in getattr(sys, "orig_argv", ())
    if spawned and parent.isdigit() and int(parent) != os.getpid():
        die_with_parent(int(parent))
