"""Step time of static- and dynamic-graph training, side by side in one run.

    python benchmarks/bench_static_vs_dynamic.py [--steps 12] [--warmup 2] [--nprocs 1,2]

For each number of processes one launched job (`paddle.distributed.launch`, gloo on CPU) builds,
per setting, the trainer's step twice with `arcface_paddle.train.build_train_step`: once in
dynamic and once in static mode, from the same config, seed and initial weights. The two then
train side by side on the same batches, alternating step by step, so load from other jobs
falls on both alike. Settings: the tiny config as it is, and MobileFaceNet (128-D) at batch 32
per rank. A step is the whole train step (forward, backward, gradient all-reduce, overflow
check, both updates), timed until its loss is read back; the first `--warmup` steps (static
mode converts its program in the first) are left out and the median of the rest is reported,
with the ratio static / dynamic (below 1.0: static is faster).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
TINY_CONFIG = REPO / "configs" / "tiny_cpu.py"
MODES = ("dynamic", "static")
#: name -> overrides of the tiny config
SETTINGS = {
    "tiny config": {},
    "MobileFaceNet 128-D, batch 32": {"embedding_size": "128", "batch_size": "32"},
}


def setting_config(setting: str, mode: str | None = None):
    from arcface_paddle.config import load_config

    overrides = list(SETTINGS[setting].items())
    if mode is not None:
        overrides.append(("is_static", str(mode == "static")))
    return load_config(TINY_CONFIG, overrides)


def time_setting(setting: str, steps: int) -> dict[str, list[float]]:
    """Both modes of one setting, alternating step by step -> seconds per step, by mode."""
    import numpy as np
    import paddle

    from arcface_paddle import distributed
    from arcface_paddle.train import build_run_schedule, build_train_step

    config = setting_config(setting)
    world = distributed.get_world_size()
    schedule = build_run_schedule(config, config.batch_size * world, steps_per_epoch=steps)
    train_steps = {mode: build_train_step(setting_config(setting, mode), schedule)
                   for mode in MODES}
    for train_step in train_steps.values():
        train_step.backbone.train()
    rng = np.random.default_rng([config.seed, distributed.get_rank()])
    times: dict[str, list[float]] = {mode: [] for mode in MODES}
    for _ in range(steps):
        images = paddle.to_tensor(rng.standard_normal(
            (config.batch_size, 3, 112, 112), dtype=np.float32))
        labels = paddle.to_tensor(rng.integers(0, config.num_classes, config.batch_size))
        for mode, train_step in train_steps.items():
            started = time.perf_counter()
            train_step(images, labels)  # returns once its loss is read back
            times[mode].append(time.perf_counter() - started)
    return times


def worker(output: Path, steps: int) -> None:
    """One rank of the launched job; rank 0 writes the step times of every setting."""
    from arcface_paddle import distributed

    distributed.init_distributed()
    results = {setting: time_setting(setting, steps) for setting in SETTINGS}
    if distributed.is_main_process():
        (output / "times.json").write_text(json.dumps(results))


def launch(nproc: int, output: Path, steps: int) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PADDLE_")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    command = [sys.executable, "-m", "paddle.distributed.launch", "--nproc_per_node",
               str(nproc), "--log_dir", str(output / "launch_log"), "--log_level", "WARNING",
               __file__, "--worker", str(output), "--steps", str(steps)]
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        logs = "\n".join(p.read_text()[-3000:] for p in (output / "launch_log").glob("work*"))
        raise SystemExit(f"{nproc}-process job failed ({result.returncode}):\n{logs}")
    return json.loads((output / "times.json").read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--steps", type=int, default=12, help="steps per mode and setting")
    parser.add_argument("--warmup", type=int, default=2, help="first steps left out")
    parser.add_argument("--nprocs", default="1,2", help="process counts, comma-separated")
    parser.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker is not None:
        worker(args.worker, args.steps)
        return
    if args.steps <= args.warmup:
        raise SystemExit("error: --steps must exceed --warmup")

    from prettytable import PrettyTable

    table = PrettyTable(["setting", "processes", "dynamic s/step", "static s/step",
                         "static / dynamic", "dynamic img/s", "static img/s"])
    results = []
    with tempfile.TemporaryDirectory(prefix="bench_static_") as tmp:
        for nproc in (int(n) for n in args.nprocs.split(",")):
            output = Path(tmp) / f"{nproc}proc"
            output.mkdir()
            times = launch(nproc, output, args.steps)
            for setting in SETTINGS:
                batch = setting_config(setting).batch_size * nproc
                median = {mode: statistics.median(times[setting][mode][args.warmup:])
                          for mode in MODES}
                ratio = median["static"] / median["dynamic"]
                results.append({"setting": setting, "processes": nproc, **median,
                                "ratio": ratio, "global_batch": batch})
                table.add_row([setting, nproc, f"{median['dynamic']:.3f}",
                               f"{median['static']:.3f}", f"{ratio:.3f}",
                               f"{batch / median['dynamic']:.1f}",
                               f"{batch / median['static']:.1f}"])
    print(table)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
