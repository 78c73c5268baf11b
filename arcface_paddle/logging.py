"""Training logs from rank 0: a console line every N steps, VisualDL scalars, a JSON-lines
file (`<output>/train_log.jsonl`) that scripts and tests can read back, and the human-readable
lines also in `<output>/train.log` (standard `logging`, logger "arcface_paddle.train").

Console line: step, loss (the mean over the steps since the last line, and the line says so),
lr, throughput (global images/s), loss scale, skipped steps, eta.

A run that starts at step S (resumed from a checkpoint, or S = 0 for a fresh start in the same
output folder) first drops the records of steps after S: a crash after the last checkpoint left
records of steps that the resumed run logs again, and the file should hold each step once.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from insightface_paddle.fileio import atomic_open

from .errors import ArcFaceError

LOG_FILE = "train_log.jsonl"
TEXT_LOG_FILE = "train.log"
TEXT_LOGGER = "arcface_paddle.train"
VISUALDL_DIR = "vdl"


def format_eta(seconds: float) -> str:
    seconds = int(max(0.0, seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}"


def prepare_output(output: str | os.PathLike[str]) -> Path:
    """Create the run folder and make sure files can be written in it, before any data or
    model is touched (an unwritable `--output` once surfaced as a traceback at the first log).
    """
    path = Path(output)
    if path.exists() and not path.is_dir():
        raise ArcFaceError(f"--output {path}: is a file, expected a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as exc:
        raise ArcFaceError(f"--output {path}: cannot write there ({exc.strerror or exc})") from None
    return path


def drop_records_after(path: Path, step: int) -> int:
    """Rewrite the JSON-lines log at `path` (atomically) without the records of steps after
    `step` and without lines torn by a crash -> the number of lines dropped."""
    if not path.is_file():
        return 0
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    kept = []
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            continue  # the last line of a killed run may be cut short
        if isinstance(record, dict) and int(record.get("step", 0)) <= step:
            kept.append(line)
    if len(kept) != len(lines):
        with atomic_open(path, "w", encoding="utf-8", newline="\n") as handle:
            handle.writelines(f"{line}\n" for line in kept)
    return len(lines) - len(kept)


class TrainLogger:
    """Does nothing on ranks other than 0 (`enabled=False`). `start_step`: the completed steps
    the run starts from; later records already in the log are dropped (module docstring)."""

    def __init__(self, output: str | Path, total_steps: int, global_batch: int,
                 log_interval: int = 100, visualdl: bool = True, enabled: bool = True,
                 start_step: int = 0) -> None:
        self.enabled = enabled
        self.total_steps = total_steps
        self.global_batch = global_batch
        self.log_interval = max(1, log_interval)
        self.output = Path(output)
        self._writer = None
        self._jsonl = None
        self._text: logging.Logger | None = None
        self._handler: logging.Handler | None = None
        self._window: list[float] = []
        self._skipped = 0
        self._window_start = time.perf_counter()
        if not enabled:
            return
        prepare_output(self.output)
        self._handler = logging.FileHandler(self.output / TEXT_LOG_FILE, encoding="utf-8")
        self._handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
        self._text = logging.getLogger(TEXT_LOGGER)
        self._text.setLevel(logging.INFO)
        self._text.propagate = False  # the console line is printed; the file gets a copy
        self._text.addHandler(self._handler)
        dropped = drop_records_after(self.output / LOG_FILE, start_step)
        if dropped:
            self.info(f"{LOG_FILE}: dropped {dropped} record(s) after step {start_step}, "
                      "which this run logs again")
        self._jsonl = open(self.output / LOG_FILE, "a", encoding="utf-8")  # noqa: SIM115
        if visualdl:
            from visualdl import LogWriter

            self._writer = LogWriter(logdir=str(self.output / VISUALDL_DIR))

    def info(self, message: str) -> None:
        if self.enabled:
            print(message, flush=True)
        if self._text is not None:
            self._text.info(message)

    def record(self, **fields: Any) -> None:
        """One JSON line in train_log.jsonl."""
        if self._jsonl is not None:
            self._jsonl.write(json.dumps(fields) + "\n")
            self._jsonl.flush()

    def scalar(self, tag: str, value: float, step: int) -> None:
        if self._writer is not None:
            self._writer.add_scalar(tag=tag, value=value, step=step)

    def step(self, step: int, loss: float, lr: float, loss_scale: float, skipped: bool,
             step_time: float) -> None:
        """After training step `step` (1-based count of completed steps); `step_time` is the
        seconds the train step itself took (no data loading), what benchmarks compare."""
        if not self.enabled:
            return
        self._window.append(loss)
        self._skipped += int(skipped)
        self.record(step=step, loss=loss, lr=lr, loss_scale=loss_scale, skipped=skipped,
                    step_time=round(step_time, 6))
        if step % self.log_interval and step != self.total_steps:
            return
        elapsed = time.perf_counter() - self._window_start
        steps = len(self._window)
        mean_loss = sum(self._window) / steps
        speed = steps * self.global_batch / max(elapsed, 1e-9)
        eta = elapsed / steps * (self.total_steps - step)
        self.info(f"step {step}/{self.total_steps}  loss {mean_loss:.4f} (mean of {steps} "
                  f"step{'s' if steps > 1 else ''})  lr {lr:.6f}  "
                  f"{speed:.1f} img/s  loss scale {loss_scale:g}  skipped {self._skipped}  "
                  f"eta {format_eta(eta)}")
        for tag, value in (("loss", mean_loss), ("lr", lr), ("throughput", speed),
                           ("loss_scale", loss_scale)):
            self.scalar(f"train/{tag}", value, step)
        self._window, self._skipped = [], 0
        self._window_start = time.perf_counter()

    def close(self) -> None:
        if self._handler is not None:
            self._text.removeHandler(self._handler)
            self._handler.close()
            self._handler = None
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if self._jsonl is not None:
            self._jsonl.close()
            self._jsonl = None
