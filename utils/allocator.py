"""Keep freed memory in the process (glibc malloc settings) so every forward pass stops paying for page faults.

By default glibc serves every allocation above 128 KiB-32 MiB with its own
``mmap`` and gives it back with ``munmap`` when the tensor is freed; the next
forward pass faults the same memory in again, page by page. For MPRNet on a
CPU that is 1.4-1.9 million page faults per 480x320 image, about a third of
the run time (docs/PERFORMANCE.md). Three ``mallopt`` settings stop it:

- ``M_MMAP_MAX 0``: big blocks come from the heap, not from their own mmap;
- ``M_TRIM_THRESHOLD 2 GiB - 1``: free memory at the top of the heap is only
  returned to the system above that much;
- ``M_TOP_PAD 1 GiB``: the heap grows in large steps.

The cost: the process keeps its peak memory until it exits instead of
shrinking between images (the peak itself does not grow). Outputs are
bit-identical: only where memory comes from changes.

Entry points (demo.py, the test scripts, train.py, the benchmarks) call
``keep_freed_memory()`` first. ``MPRNET_ALLOCATOR=system`` in the
environment turns it off; MALLOC_*_ environment variables set by the user
are respected (glibc reads them at start-up and they win).
"""
import ctypes
import ctypes.util
import os
import platform
from typing import Optional

__all__ = ['keep_freed_memory', 'ENV_SWITCH']

ENV_SWITCH = 'MPRNET_ALLOCATOR'  # 'keep' (default) or 'system'
# mallopt parameter numbers from glibc's malloc.h.
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_MAX = -1, -2, -4
_INT_MAX = 2 ** 31 - 1  # mallopt takes a C int
_SETTINGS = ((_M_MMAP_MAX, 0), (_M_TRIM_THRESHOLD, _INT_MAX), (_M_TOP_PAD, 1 << 30))
_USER_VARIABLES = ('MALLOC_MMAP_MAX_', 'MALLOC_TRIM_THRESHOLD_', 'MALLOC_TOP_PAD_', 'MALLOC_MMAP_THRESHOLD_')
_applied: Optional[str] = None


def _glibc() -> Optional[ctypes.CDLL]:
    """The C library if it is glibc (Linux); None elsewhere (macOS, Windows, musl)."""
    if platform.system() != 'Linux' or platform.libc_ver()[0] != 'glibc':
        return None
    try:
        return ctypes.CDLL(ctypes.util.find_library('c') or 'libc.so.6')
    except OSError:
        return None


def keep_freed_memory() -> str:
    """Apply the settings once per process; returns what was done, for logs:

    'kept' (applied), 'off' (MPRNET_ALLOCATOR=system), 'user' (the user set
    MALLOC_* variables), 'unsupported' (not glibc) or 'failed' (mallopt refused).
    """
    global _applied
    if _applied is not None:
        return _applied
    choice = os.environ.get(ENV_SWITCH, 'keep').strip().lower()
    if choice not in ('keep', 'system'):
        raise ValueError(f"the environment variable {ENV_SWITCH} must be 'keep' or 'system', got {choice!r}; "
                         'unset it for the default (keep)')
    libc = _glibc()
    if choice == 'system':
        _applied = 'off'
    elif any(name in os.environ for name in _USER_VARIABLES):
        _applied = 'user'
    elif libc is None:
        _applied = 'unsupported'
    else:
        ok = all(libc.mallopt(ctypes.c_int(param), ctypes.c_int(value)) == 1 for param, value in _SETTINGS)
        _applied = 'kept' if ok else 'failed'
    return _applied
