"""The C library through ctypes, for the few Linux calls Python has no wrapper for (prctl).

One home for the handle and the option numbers: threads.py names threads for the kernel
(PR_SET_NAME), sources/process.py makes a child die with the thread that started it
(PR_SET_PDEATHSIG). Off Linux, or when libc cannot be loaded, `libc()` is None and callers skip the
call.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys
from functools import lru_cache

# From <linux/prctl.h>
PR_SET_PDEATHSIG = 1
PR_SET_NAME = 15


@lru_cache(maxsize=1)
def libc() -> ctypes.CDLL | None:
    """The process's libc (loaded once), or None off Linux or if it cannot be loaded."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    except OSError:
        return None
