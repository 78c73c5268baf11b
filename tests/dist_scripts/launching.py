"""Start `python -m paddle.distributed.launch --nproc_per_node N` from tests, on CPU (gloo)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

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


def run_launched(nproc: int, log_dir: Path, script: Path, *args: str, timeout: float = 300
                 ) -> None:
    """Run to completion; fail with the workers' logs if any rank failed."""
    result = subprocess.run(launch_command(nproc, log_dir, script, *args), cwd=REPO,
                            env=clean_env(), capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        raise AssertionError(f"launch exited {result.returncode}\n{result.stdout[-2000:]}\n"
                             f"{result.stderr[-2000:]}\n{worker_logs(log_dir)}")
