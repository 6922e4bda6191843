"""Keep freed CPU memory for reuse: fewer page faults in chunked loops (glibc).

A chunked attribution loop allocates and frees the same large activations
chunk after chunk. glibc's ``malloc`` adapts two thresholds as it runs: blocks
above the *mmap threshold* are mapped fresh and unmapped on free, and free
memory at the top of the heap above the *trim threshold* is given back to the
system. Both move with the history of the process, so the same call can fault
all its activations in afresh on every chunk in one process and not at all in
the next.

:func:`tune_cpu_allocator` fixes them (``mallopt``), as the environment
variables ``MALLOC_MMAP_THRESHOLD_`` / ``MALLOC_TRIM_THRESHOLD_`` would at
start-up. It changes the whole process, so the library never calls it on its
own; the command line (``python -m captum_prior explain | evaluate``) does,
unless told ``--no-tune-allocator`` or those variables (or
``GLIBC_TUNABLES``) are set. The cost: up to ``trim_threshold`` bytes of freed
memory stay with the process instead of going back to the system.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform

__all__ = ["allocator_chosen_by_environment", "tune_cpu_allocator"]

#: ``mallopt`` parameter numbers (glibc ``malloc.h``).
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
#: glibc refuses an mmap threshold above this on 64-bit systems (HEAP_MAX_SIZE / 2).
MAX_MMAP_THRESHOLD = 32 << 20
#: Environment variables through which a user already chose the thresholds.
ENV_VARS = ("MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_", "GLIBC_TUNABLES")


def tune_cpu_allocator(trim_threshold: int = 256 << 20, mmap_threshold: int = MAX_MMAP_THRESHOLD) -> bool:
    """Fix glibc's trim and mmap thresholds for this process.

    Parameters
    ----------
    trim_threshold : int, default=256 MiB
        Bytes of free memory at the top of the heap that are kept instead of
        being returned to the system (below 2 GiB).
    mmap_threshold : int, default=32 MiB
        Blocks at least this large are mapped fresh (and unmapped on free);
        smaller ones come from the heap and are reused. At most 32 MiB
        (glibc's limit on 64-bit systems).

    Returns
    -------
    bool
        True if both thresholds were set; False where the C library is not
        glibc (macOS, Windows, musl): nothing is changed there.

    Raises
    ------
    ValueError
        A threshold that is not a positive int, a trim threshold of 2 GiB or
        more, or an mmap threshold above 32 MiB.

    See Also
    --------
    allocator_chosen_by_environment : whether the environment already set them.

    Notes
    -----
    The setting is process-wide and lasts until the process ends; the library
    never calls this on its own.

    Examples
    --------
    >>> from captum_prior.allocator import tune_cpu_allocator
    >>> tune_cpu_allocator(mmap_threshold=64 << 20)
    Traceback (most recent call last):
    ...
    ValueError: mmap_threshold=67108864 is above glibc's limit of 33554432 bytes (32 MiB)
    """
    for name, value in (("trim_threshold", trim_threshold), ("mmap_threshold", mmap_threshold)):
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ValueError(f"{name} must be a positive int (bytes), got {value!r}")
    if trim_threshold >= 1 << 31:
        raise ValueError(f"trim_threshold={trim_threshold} must be below 2 GiB (mallopt takes a C int)")
    if mmap_threshold > MAX_MMAP_THRESHOLD:
        raise ValueError(
            f"mmap_threshold={mmap_threshold} is above glibc's limit of {MAX_MMAP_THRESHOLD} bytes (32 MiB)"
        )
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # pragma: no cover - not glibc after all
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    ok = mallopt(_M_MMAP_THRESHOLD, int(mmap_threshold)) == 1
    return bool(mallopt(_M_TRIM_THRESHOLD, int(trim_threshold)) == 1 and ok)


def allocator_chosen_by_environment() -> bool:
    """Whether the user set glibc's thresholds through the environment.

    Returns
    -------
    bool
        True when ``MALLOC_TRIM_THRESHOLD_``, ``MALLOC_MMAP_THRESHOLD_`` or
        ``GLIBC_TUNABLES`` is set (non-empty); the command line then leaves
        the allocator alone.
    """
    return any(os.environ.get(v) for v in ENV_VARS)
