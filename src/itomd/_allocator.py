"""Keep freed memory in the process: large pair tensors are then not mapped afresh on every step.

The equivariant network allocates pair tensors of ``batch × n_atoms² × channels`` floats every
training step and sampler evaluation. glibc serves allocations above its mmap threshold with fresh
``mmap`` calls and returns them at ``free``, so every step pays page faults on hundreds of MB: measured
(``bench/molecule_scaling.py --malloc-tuned``) 2.3× slower training steps at 52 atoms and 2.6× at 92
than with the allocator told to keep its memory. :func:`keep_freed_memory` tells it, through
``mallopt`` (the ``MALLOC_MMAP_MAX_`` / ``MALLOC_TRIM_THRESHOLD_`` settings, applied at run time).
Numbers are unchanged; a process's resident memory stays at its peak instead of shrinking.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import sys

#: glibc's mallopt parameters.
_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4


@functools.cache
def keep_freed_memory() -> bool:
    """Stop glibc from returning freed memory to the system (no mmap for large blocks, no trimming).

    Applied once per process (every network built calls it; finding libc runs ``ldconfig``, ~2 ms).

    Returns
    -------
    bool
        Whether the allocator accepted the settings (False off Linux/glibc: nothing changes).
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, 2**31 - 1))


__all__ = ["keep_freed_memory"]
