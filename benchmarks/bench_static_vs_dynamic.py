"""Step time of static- and dynamic-graph training, side by side in one run.

    python benchmarks/bench_static_vs_dynamic.py [--steps 12] [--warmup 2] [--nprocs 1,2]

For each number of processes one launched job (`paddle.distributed.launch`, gloo on CPU) runs
the trainer (`arcface_paddle.train.train`) on each setting in dynamic and then in static mode:
the tiny config as it is, and MobileFaceNet (128-D) at batch 32 per rank. Same config, seed and
data for both modes. A step's time is the `step_time` the trainer logs (the train step alone:
forward, backward, gradient all-reduce, update; no data loading); the first `--warmup` steps
(static mode converts its program in the first) are left out and the median of the rest is
reported, with the ratio static / dynamic (below 1.0: static is faster).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TINY_CONFIG = REPO / "configs" / "tiny_cpu.py"
MODES = ("dynamic", "static")
#: name -> overrides of the tiny config
SETTINGS = {
    "tiny config": {},
    "MobileFaceNet 128-D, batch 32": {"embedding_size": "128", "batch_size": "32"},
}


def run_name(setting: str, mode: str) -> str:
    return f"{setting.split()[0]}_{mode}"


def worker(output: Path, steps: int) -> None:
    """One rank of the launched job: every setting in both modes, one after the other."""
    sys.path.insert(0, str(REPO))
    from arcface_paddle.config import load_config
    from arcface_paddle.train import train

    for setting, overrides in SETTINGS.items():
        for mode in MODES:
            train(load_config(TINY_CONFIG, [
                *overrides.items(), ("is_static", str(mode == "static")),
                ("max_steps", str(steps)), ("checkpoint_interval_step", "0"),
                ("validation_interval_step", "0"), ("visualdl", "False"),
                ("log_interval_step", str(steps)),
                ("output", str(output / run_name(setting, mode)))]))


def step_times(run: Path, warmup: int) -> list[float]:
    records = [json.loads(line) for line in (run / "train_log.jsonl").open()]
    return [r["step_time"] for r in records if "step_time" in r and r["step"] > warmup]


def launch(nproc: int, output: Path, steps: int) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PADDLE_")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    command = [sys.executable, "-m", "paddle.distributed.launch", "--nproc_per_node",
               str(nproc), "--log_dir", str(output / "launch_log"), "--log_level", "WARNING",
               __file__, "--worker", str(output), "--steps", str(steps)]
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        logs = "\n".join(p.read_text()[-3000:] for p in (output / "launch_log").glob("work*"))
        raise SystemExit(f"{nproc}-process job failed ({result.returncode}):\n{logs}")


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

    sys.path.insert(0, str(REPO))
    from arcface_paddle.config import load_config

    table = PrettyTable(["setting", "processes", "dynamic s/step", "static s/step",
                         "static / dynamic", "dynamic img/s", "static img/s"])
    results = []
    with tempfile.TemporaryDirectory(prefix="bench_static_") as tmp:
        for nproc in (int(n) for n in args.nprocs.split(",")):
            output = Path(tmp) / f"{nproc}proc"
            launch(nproc, output, args.steps)
            for setting, overrides in SETTINGS.items():
                batch = load_config(TINY_CONFIG, list(overrides.items())).batch_size * nproc
                median = {mode: statistics.median(step_times(
                    output / run_name(setting, mode), args.warmup)) for mode in MODES}
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
