"""Workers die with their parent (`arcface_paddle.lifetime`), and the suite's own leak check
(tests/dist_scripts/processes.py, run at session end by tests/conftest.py) finds orphans."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import numpy as np
import pytest

from arcface_paddle.data.recordio import write_rec_dataset
from dist_scripts.launching import clean_env
from dist_scripts.processes import MARKER_ENV, kill_pids, started_by, wait_until_gone

REPO = Path(__file__).resolve().parents[1]


def marked_env() -> tuple[dict[str, str], str]:
    """The tests' environment with a mark of its own, to find what one test started."""
    marker = uuid.uuid4().hex
    return {**clean_env(), MARKER_ENV: marker}, marker


def wait_for_line(process: subprocess.Popen, expected: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if expected in line:
            return
        if not line and process.poll() is not None:
            pytest.fail(f"exited {process.returncode} before printing {expected!r}")
    pytest.fail(f"no {expected!r} in time")


def test_the_leak_check_finds_an_orphan_by_its_mark():
    env, marker = marked_env()
    code = "import os, time\nif os.fork() == 0:\n    time.sleep(120)\n"  # parent exits at once
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=60)
    orphans = started_by(os.getpid(), marker)
    try:
        assert len(orphans) == 1 and orphans[0].ppid != os.getpid()
        assert b"time.sleep(120)" in orphans[0].cmdline
    finally:
        kill_pids(p.pid for p in orphans)
    assert wait_until_gone(os.getpid(), marker) == []


def test_dataloader_workers_die_with_a_killed_trainer():
    env, marker = marked_env()
    script = textwrap.dedent("""
        import time
        from arcface_paddle.data.datasets import (FaceDataset, GlobalBatchSampler,
                                                  build_loader, open_reader)
        reader = open_reader("synthetic", "synthetic", num_classes=4, images_per_class=8)
        dataset = FaceDataset(reader, False, 0)
        loader = build_loader(dataset, GlobalBatchSampler(len(dataset), 2, 0, 1), 2)
        batches = iter(loader)
        next(batches)
        print("ready", flush=True)
        time.sleep(120)
    """)
    process = subprocess.Popen([sys.executable, "-c", script], env=env, cwd=REPO,
                               stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        wait_for_line(process, "ready")
        workers = started_by(os.getpid(), marker)
        assert len(workers) >= 3, [w.describe() for w in workers]  # trainer + 2 workers
        os.kill(process.pid, signal.SIGKILL)  # the trainer only, as a crash would
        process.wait(timeout=30)
        left = wait_until_gone(os.getpid(), marker)
        assert left == [], [p.describe() for p in left]
    finally:
        kill_pids(p.pid for p in started_by(os.getpid(), marker))
        process.wait()


@pytest.mark.slow
def test_kill_9_of_the_conversion_tool_leaves_no_worker_writing(tmp_path):
    rng = np.random.default_rng(0)
    payloads = [b"\xff\xd8\xff\xe0" + rng.bytes(300) for _ in range(8000)]
    write_rec_dataset(tmp_path / "faces", np.repeat(np.arange(80), 100), iter(payloads))
    env, marker = marked_env()
    out = tmp_path / "out"
    process = subprocess.Popen(
        [sys.executable, str(REPO / "tools" / "mx_recordio_2_images.py"), "--root_dir",
         str(tmp_path / "faces"), "--output_dir", str(out), "--num_workers", "2"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and process.poll() is None:
            if (out / "images").is_dir() and len(os.listdir(out / "images")) >= 300:
                break
            time.sleep(0.01)
        assert process.poll() is None, "the conversion ended before it could be interrupted"
        os.kill(process.pid, signal.SIGKILL)  # the tool only, not its process group
        process.wait(timeout=30)
        left = wait_until_gone(os.getpid(), marker)
        assert left == [], [p.describe() for p in left]
        count = len(os.listdir(out / "images"))
        time.sleep(1.0)
        assert len(os.listdir(out / "images")) == count  # nobody writes any more
    finally:
        kill_pids(p.pid for p in started_by(os.getpid(), marker))
        process.wait()
