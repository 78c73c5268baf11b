"""Start `python -m paddle.distributed.launch --nproc_per_node N` from tests, on CPU (gloo)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

from dist_scripts.processes import descendants, kill_pids

REPO = Path(__file__).resolve().parents[2]


def launch_command(nproc: int, log_dir: Path, script: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "paddle.distributed.launch", "--nproc_per_node", str(nproc),
            "--log_dir", str(log_dir), str(script), *args]


def clean_env() -> dict[str, str]:
    """The test's environment minus any rank variables of an outer launch, with the repository
    and tests/ importable (`arcface_paddle`, `dist_scripts`)."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PADDLE_", "FLAGS_selected"))}
    paths = [str(REPO), str(REPO / "tests"), env.get("PYTHONPATH", "")]
    env["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
    return env


def worker_logs(log_dir: Path, tail: int = 3000) -> str:
    return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-tail:]}"
                     for p in sorted(Path(log_dir).glob("workerlog.*")))


def start_launched(nproc: int, log_dir: Path, script: Path, *args: str,
                   **popen: object) -> subprocess.Popen:
    """The launcher in a session of its own, so `kill_tree` can end it and all it started."""
    return subprocess.Popen(launch_command(nproc, log_dir, script, *args), cwd=REPO,
                            env=clean_env(), start_new_session=True, **popen)


def kill_tree(process: subprocess.Popen) -> None:
    """SIGKILL `process`, its process group and every descendant still alive; reap it."""
    pids = [process.pid, *descendants(process.pid)]
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    kill_pids(pids)  # descendants that left the group
    process.wait()


def run_launched(nproc: int, log_dir: Path, script: Path, *args: str, timeout: float = 300
                 ) -> None:
    """Run to completion; fail with the workers' logs if any rank failed. Whatever happens
    (timeout, Ctrl-C), nothing it started outlives the call."""
    process = start_launched(nproc, log_dir, script, *args, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    finally:
        kill_tree(process)
    if process.returncode != 0:
        raise AssertionError(f"launch exited {process.returncode}\n{stdout[-2000:]}\n"
                             f"{stderr[-2000:]}\n{worker_logs(log_dir)}")
