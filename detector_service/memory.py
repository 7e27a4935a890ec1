"""Giving freed memory back to the operating system.

glibc keeps freed heap memory in its arenas for reuse, and after the first large free it raises
its mmap threshold (up to 32 MB), so 720p frames and model buffers come from those arenas too: a
detector that streamed once held its peak RSS forever. ``malloc_trim`` returns the free pages of
every arena; it is called when the model has been released, when there is a lot to return.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools


@functools.cache
def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        libc = ctypes.CDLL(name)
        libc.malloc_trim  # noqa: B018 - glibc only (not musl): probe it once
    except (OSError, AttributeError):
        return None
    return libc


def trim() -> bool:
    """Return the heap's free pages to the system; False where the C library cannot."""
    libc = _libc()
    if libc is None:
        return False
    libc.malloc_trim(0)
    return True
