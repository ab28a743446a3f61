"""Memory for the sources read file by file (:mod:`features.ingest.stream`): freed memory kept
for the next file, and a file's rows handed from a worker process to the writer through shared
memory.

Each file of a region's presence allocates and frees about a gigabyte of columns. By default
glibc gives every block above 128 KB back to the system when it is freed (and Arrow's allocator
purges its free pages after a few milliseconds), so the next file takes the same memory again,
page by page: on a virtual machine that costs as much system time as the parsing itself.
:func:`reused_memory` keeps freed memory in the process while the source is read, and gives it
back once it is written (glibc's ``mallopt``; jemalloc's and mimalloc's options cannot keep
blocks of several megabytes).

A worker's kept rows (about 190 MB a file) reach the writing process as an Arrow IPC file in
shared memory (``/dev/shm``), mapped by the reader without a copy, where a pickle through a pipe
copies them three times.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa

#: glibc's mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
#: After the source: glibc cannot turn its dynamic mmap threshold back on once ``mallopt`` set
#: it, and its 128 KB start value would then map (and unmap, page by page) every block above
#: 128 KB for the rest of the process. So the thresholds are left where the dynamic rule itself
#: goes once a process has freed large arrays: its ceiling on 64-bit systems
#: (DEFAULT_MMAP_THRESHOLD_MAX, 32 MB), trimming at twice that.
_AFTER_MMAP, _AFTER_TRIM = 32 * 2**20, 64 * 2**20


def _libc():
    """glibc, or None (another C library, another system: the defaults stay)."""
    name = ctypes.util.find_library("c")
    if not name or os.name != "posix":
        return None
    try:
        libc = ctypes.CDLL(name)
        return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None
    except OSError:
        return None


@contextlib.contextmanager
def reused_memory() -> Iterator[None]:
    """While inside (on glibc): blocks freed by NumPy, pandas and Arrow stay in glibc's heap
    (mapped blocks only above 1 GB, no trimming), Arrow allocating from it too (its system
    pool: jemalloc and mimalloc give large blocks back to the system at once); worker
    processes forked inside inherit both. On leaving, Arrow's pool comes back, the thresholds
    are left where glibc's dynamic rule ends after large frees (:data:`_AFTER_MMAP`: its own
    start value cannot be restored) and the free memory is returned to the system. Elsewhere,
    nothing changes."""
    libc = _libc()
    if libc is None:
        yield
        return
    old_pool = pa.default_memory_pool()
    pa.set_memory_pool(pa.system_memory_pool())
    # mallopt returns 0 when a value is refused (an older glibc's ceiling): nothing else is set
    if libc.mallopt(_M_MMAP_THRESHOLD, 1 << 30):
        libc.mallopt(_M_TRIM_THRESHOLD, 1 << 31)
    try:
        yield
    finally:
        libc.mallopt(_M_MMAP_THRESHOLD, _AFTER_MMAP)
        libc.mallopt(_M_TRIM_THRESHOLD, _AFTER_TRIM)
        pa.set_memory_pool(old_pool)
        libc.malloc_trim(0)


#: free space ``/dev/shm`` must have to hold the tables in flight (two workers and the writer's,
#: about 190 MB each for a region's presence file)
SHM_NEED = 2**30


def _shm_has_room(path: str) -> bool:
    if not (os.path.isdir(path) and os.access(path, os.W_OK)):
        return False
    try:
        st = os.statvfs(path)
    except OSError:
        return False
    return st.f_bavail * st.f_frsize >= SHM_NEED


@contextlib.contextmanager
def shared_dir() -> Iterator[Path]:
    """A folder for the hand-off of tables between processes: in ``/dev/shm`` when the system
    has it (memory, no disk) with room for a few files' tables (:data:`SHM_NEED`; a container's
    is often 64 MB), else in the temporary folder; removed on leaving."""
    base = "/dev/shm" if _shm_has_room("/dev/shm") else None
    _remove_orphans(Path(base or tempfile.gettempdir()))
    d = Path(tempfile.mkdtemp(prefix=f"vigie-ingest-{os.getpid()}-", dir=base))
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def _remove_orphans(base: Path) -> None:
    """Folders of :func:`shared_dir` left by a process that no longer runs (killed mid-ingest):
    removed, so shared memory does not fill up over killed runs."""
    for d in base.glob("vigie-ingest-*-*"):
        try:
            pid = int(d.name.split("-")[2])
            os.kill(pid, 0)  # signal 0: only whether the process exists
        except ProcessLookupError:
            shutil.rmtree(d, ignore_errors=True)
        except (ValueError, IndexError, PermissionError, OSError):
            continue


def put_table(table: pa.Table, folder: Path) -> str:
    """``table`` written to a new Arrow IPC file in ``folder``; its path."""
    path = folder / f"{uuid.uuid4().hex}.arrow"
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, table.schema) as w:
        w.write_table(table)
    return str(path)


def take_table(path: str) -> pa.Table:
    """The table of :func:`put_table`, memory-mapped (no copy), its file removed (the mapping
    keeps the memory until the table is dropped)."""
    try:
        return pa.ipc.open_file(pa.memory_map(path)).read_all()
    finally:
        os.unlink(path)
