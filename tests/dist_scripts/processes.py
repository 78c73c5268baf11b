"""Finding and ending the processes a test started, from /proc (Linux).

The suite marks its environment with `MARKER_ENV` (tests/conftest.py); every process it starts
inherits the mark, also the orphans a SIGKILLed parent leaves behind (re-parented to PID 1,
they are no longer anyone's descendants), so the session can check at its end that none is
left.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

MARKER_ENV = "ARCFACE_PADDLE_TEST_SESSION"
#: started by multiprocessing for the pytest process itself; it exits with pytest
PYTEST_HELPERS = (b"multiprocessing.resource_tracker", b"multiprocessing.forkserver")


@dataclass(frozen=True)
class ProcessInfo:
    pid: int
    ppid: int
    cmdline: bytes
    environ: bytes

    def describe(self) -> str:
        command = self.cmdline.replace(b"\0", b" ").decode(errors="replace").strip()
        return f"pid {self.pid} (parent {self.ppid}): {command[:300]}"


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError:
        return b""


def process_table() -> dict[int, ProcessInfo]:
    """Live (not zombie) processes readable by this user, by pid."""
    table = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        stat = _read(entry / "stat")
        fields = stat[stat.rfind(b")") + 2:].split()
        if len(fields) < 2 or fields[0] == b"Z":
            continue
        table[int(entry.name)] = ProcessInfo(int(entry.name), int(fields[1]),
                                             _read(entry / "cmdline"), _read(entry / "environ"))
    return table


def descendants(root: int, table: dict[int, ProcessInfo] | None = None) -> list[int]:
    table = process_table() if table is None else table
    children: dict[int, list[int]] = {}
    for info in table.values():
        children.setdefault(info.ppid, []).append(info.pid)
    found, todo = [], list(children.get(root, []))
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo += children.get(pid, [])
    return found


def started_by(root: int, marker: str | None, paths: Iterable[str | os.PathLike[str]] = ()
               ) -> list[ProcessInfo]:
    """Processes other than `root` that descend from it, carry `MARKER_ENV=marker`, or name one
    of `paths` on their command line; multiprocessing's own helpers of `root` excepted."""
    table = process_table()
    mark = None if marker is None else f"{MARKER_ENV}={marker}".encode()
    needles = [os.fsencode(os.fspath(p)) for p in paths]
    suspects = set(descendants(root, table))
    for info in table.values():
        marked = mark is not None and mark in info.environ.split(b"\0")
        if marked or any(n in info.cmdline for n in needles):
            suspects.add(info.pid)
    suspects.discard(root)
    suspects.discard(os.getpid())
    return [table[pid] for pid in sorted(suspects) if pid in table
            and not (table[pid].ppid == root
                     and any(h in table[pid].cmdline for h in PYTEST_HELPERS))]


def wait_until_gone(root: int, marker: str | None, paths: Iterable[str | os.PathLike[str]] = (),
                    timeout: float = 10.0) -> list[ProcessInfo]:
    """`started_by` after giving processes that are dying up to `timeout` seconds."""
    paths = list(paths)
    deadline = time.monotonic() + timeout
    while True:
        alive = started_by(root, marker, paths)
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.2)


def kill_pids(pids: Iterable[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
