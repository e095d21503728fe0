"""Pre-built pyramids rendered by forked worker processes: each renders and writes its share of the tiles
with no lock shared with the others.

Render threads spend much of a tile in Python (reading chunks, slicing, file calls) under one GIL: on 2
cores two threads made an 8192² DZI export only 1.3–1.6× faster than one. Processes do not contend.
A fork is safe only from a single-threaded process (another thread may hold a lock the child would
need), so :func:`can_fork` is the rule: the CLI forks; a notebook kernel or a server, which always
run other threads, keep the render threads. Forking costs a few milliseconds (copy-on-write pages) and
needs no re-import, unlike spawned processes.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import struct
import tempfile
import threading
from collections.abc import Callable, Sequence
from typing import Any, BinaryIO

from tqdm import tqdm

from imagelib.errors import ImagelibError, from_exception

#: a child reports progress every this many tiles (one byte each report)
REPORT_EVERY = 16
_ERROR = b"E"


def can_fork(workers: int) -> bool:
    """True where worker processes may be forked: POSIX, more than one worker, and this process runs
    no other thread once tqdm's monitor is stopped (every bar, even a disabled one, starts that idle
    thread and leaves it running; the next bar starts it again)."""
    if not hasattr(os, "fork") or workers < 2:
        return False
    monitor = getattr(tqdm, "monitor", None)
    if monitor is not None:
        monitor.exit()  # tqdm's own stop: sets its event and joins the thread
        tqdm.monitor = None
    return threading.active_count() == 1


def tile_bar(total: int, progress: bool) -> tqdm:
    """The progress bar of a pyramid export (silent unless ``progress``)."""
    return tqdm(total=total, unit="tile", disable=not progress, mininterval=0.5)


def run_forked(
    jobs: Sequence[tuple[str, Callable[[], bytes]]],
    write: Callable[[str, bytes], None],
    workers: int,
    progress: bool = False,
    ordered: bool = False,
) -> int:
    """Render and ``write`` every job in ``workers`` forked processes, each a contiguous share in job
    order (the walk order keeps each one's decoded chunks few); return how many were written. A
    child's error is raised here as the same coded error.

    ``ordered`` (a packed archive, written by one writer in job order): each child writes its tiles to
    its own unlinked spill file instead, and this process hands them to ``write`` share by share once
    all are rendered (memory stays flat; the spill files hold the tiles once more on disk)."""
    shares = [jobs[k * len(jobs) // workers : (k + 1) * len(jobs) // workers] for k in range(workers)]
    children: dict[int, int] = {}  # pipe (read end) → pid
    with contextlib.ExitStack() as files:
        spills = [files.enter_context(tempfile.TemporaryFile()) for _ in shares] if ordered else []
        try:
            for k, share in enumerate(shares):
                read, pid = _fork(share, Spill(spills[k]) if ordered else write)
                children[read] = pid
            done = _collect(children, len(jobs), progress)
            for spill in spills:
                Spill(spill).replay(write)
            return done
        finally:
            for read, pid in children.items():  # an error or Ctrl-C here: stop and reap every child
                os.close(read)
                _reap(pid, kill=True)


class Spill:
    """Tiles as ``<rel length, data length, rel, data>`` frames in a file: written by a child, replayed
    in order by the parent."""

    HEADER = struct.Struct("<II")

    def __init__(self, file: BinaryIO) -> None:
        self.file = file

    def __call__(self, rel: str, data: bytes) -> None:
        name = rel.encode()
        self.file.write(self.HEADER.pack(len(name), len(data)) + name + data)

    def flush(self) -> None:
        """Everything written so far, on disk (a child leaves with ``os._exit``: no buffer is flushed)."""
        self.file.flush()

    def replay(self, write: Callable[[str, bytes], None]) -> None:
        """Every frame, in the order written, to ``write``."""
        self.file.seek(0)
        while header := self.file.read(self.HEADER.size):
            size, length = self.HEADER.unpack(header)
            name = self.file.read(size).decode()
            write(name, self.file.read(length))


def _fork(
    share: Sequence[tuple[str, Callable[[], bytes]]], write: Callable[[str, bytes], None]
) -> tuple[int, int]:
    read, out = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into the caller's code
        os.close(read)
        os._exit(_child(share, write, out))
    os.close(out)
    return read, pid


def _child(
    share: Sequence[tuple[str, Callable[[], bytes]]], write: Callable[[str, bytes], None], out: int
) -> int:
    """Render + write a share, one progress byte per :data:`REPORT_EVERY` tiles; on failure the coded
    error after an ``E``. ``os._exit`` follows: no atexit hook or finaliser of the parent's objects
    (database connections, temp files) runs in the child."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)  # Ctrl-C ends the child at once; the parent reports
    try:
        for k, (rel, render) in enumerate(share, 1):
            write(rel, render())
            if k % REPORT_EVERY == 0:
                os.write(out, b"." * REPORT_EVERY)
        if isinstance(write, Spill):
            write.flush()
        os.write(out, b"." * (len(share) % REPORT_EVERY))  # the tiles not reported yet
        return 0
    except BaseException as exc:  # everything goes back to the parent, coded
        os.write(out, _ERROR + json.dumps(from_exception(exc).to_dict(), default=str).encode())
        return 1
    finally:
        os.close(out)


def _collect(children: dict[int, int], total: int, progress: bool) -> int:
    """Follow the children's pipes to their end: progress into a bar, the first error raised."""
    bar = tile_bar(total, progress)
    done, open_pipes, failure = 0, set(children), None
    try:
        while open_pipes:
            ready, _, _ = select.select(list(open_pipes), [], [])
            for read in ready:
                data = os.read(read, 1 << 16)
                if not data:
                    open_pipes.discard(read)
                    continue
                head, marker, rest = data.partition(_ERROR)
                done += len(head)
                bar.update(len(head))
                if marker:
                    failure = failure or _read_error(read, rest)
                    open_pipes.discard(read)
            if failure is not None:
                raise failure
    finally:
        bar.close()
    for read, pid in list(children.items()):
        status = _reap(pid)
        del children[read]
        os.close(read)
        if status != 0:
            raise ImagelibError(f"a tile worker process ended with status {status}", code="INTERNAL")
    return done


def _read_error(read: int, first: bytes) -> ImagelibError:
    data = first
    while chunk := os.read(read, 1 << 16):
        data += chunk
    try:
        fields: dict[str, Any] = json.loads(data)
        code, message = fields.pop("code"), fields.pop("message")
        return ImagelibError(message, code=code, **fields)
    except (ValueError, KeyError, TypeError):  # a child killed mid-write: still an error, if a vaguer one
        return ImagelibError("a tile worker process failed", code="INTERNAL")


def _reap(pid: int, kill: bool = False) -> int:
    """Wait for a child (after SIGKILL when ``kill``); its exit status (0 when already reaped)."""
    try:
        if kill:
            os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
    except (ChildProcessError, ProcessLookupError):
        return 0
    return os.waitstatus_to_exitcode(status)
