"""Checks shared by the tests of bad input: a command run in a session of its own (nothing it
starts may outlive it), and the one-line refusal every entry point gives."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def run_in_session(command: Sequence[str], timeout: float, what: str, cwd: Path = REPO,
                   env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run `command` in a session (process group) of its own; kill all of it and fail when it
    is still running after `timeout` s or leaves a process behind (ranks, loader workers)."""
    process = subprocess.Popen(list(command), cwd=cwd, env=None if env is None else dict(env),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        stdout, stderr = process.communicate()
        pytest.fail(f"{what} was still running after {timeout} s\n{stdout[-1500:]}\n"
                    f"{stderr[-2000:]}")
    with contextlib.suppress(ProcessLookupError):  # anything left in the group: kill, fail
        os.killpg(process.pid, signal.SIGKILL)
        pytest.fail(f"{what} left processes running")
    return subprocess.CompletedProcess(list(command), process.returncode, stdout, stderr)


def assert_refused(code: int | None, stdout: str, stderr: str, fragments: Sequence[str] = (),
                   exit_code: int | None = 1) -> str:
    """A refusal: exit status `exit_code` (None: any non-zero, as a shell script's), no
    traceback, one non-blank line on stderr, `error: ...`, holding every fragment -> the line."""
    shown = f"exit {code}\nstdout:\n{stdout[-1500:]}\nstderr:\n{stderr[-3000:]}"
    assert "Traceback" not in stdout + stderr, shown
    assert code != 0 if exit_code is None else code == exit_code, shown
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), shown
    for fragment in fragments:
        assert fragment in lines[0], f"{fragment!r} not in the line\n{shown}"
    return lines[0]
