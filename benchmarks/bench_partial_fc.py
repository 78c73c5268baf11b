"""Partial FC head step time and peak memory at sample_ratio 0.1 against 1.0, side by side.

    python benchmarks/bench_partial_fc.py [--classes 1000000] [--dim 128] [--batch 128]

One step = forward (cosine, margin, sharded softmax loss) + backward + the sampled-row momentum
update, on one process. Each measurement runs in its own subprocess, alternating the two
ratios, so peak memory (max RSS minus the RSS after importing paddle) is per configuration and
load from other jobs hits both sides alike. Reports the median step time of each, the ratios,
and what the centres and their momentum occupy (the same for both ratios).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RATIOS = (0.1, 1.0)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def worker(args: argparse.Namespace) -> None:
    """Time `args.steps` steps of one head configuration; print one JSON line."""
    sys.path.insert(0, str(REPO))
    import numpy as np
    import paddle

    from arcface_paddle.heads.partial_fc import PartialFC, SampledMomentum

    baseline = peak_rss_mb()
    paddle.seed(0)
    head = PartialFC(args.classes, args.dim, args.sample_ratio, seed=0)
    update = SampledMomentum()
    state_mb = 2 * head.weight.numel().item() * 4 / 2**20
    rng = np.random.default_rng(0)
    times = []
    for step in range(args.warmup + args.steps):
        features = paddle.to_tensor(rng.normal(size=(args.batch, args.dim)).astype(np.float32),
                                    stop_gradient=False)
        labels = paddle.to_tensor(rng.integers(0, args.classes, args.batch))
        start = time.perf_counter()
        loss, centres, selection = head(features, labels)
        loss.backward()
        update.step(head, selection, centres, centres.grad, 0.1)
        _ = features.grad.numpy()  # wait for the whole step
        if step >= args.warmup:
            times.append(time.perf_counter() - start)
    print(json.dumps({"sample_ratio": args.sample_ratio, "step_s": statistics.median(times),
                      "peak_mb": peak_rss_mb() - baseline, "state_mb": state_mb,
                      "sampled": centres.shape[0]}))


def run_worker(args: argparse.Namespace, ratio: float) -> dict:
    command = [sys.executable, __file__, "--worker", "--sample_ratio", str(ratio),
               "--classes", str(args.classes), "--dim", str(args.dim), "--batch",
               str(args.batch), "--steps", str(args.steps), "--warmup", str(args.warmup)]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"worker at sample_ratio {ratio} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--classes", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--batch", type=int, default=128, help="global batch (same for both)")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=2, help="subprocesses per ratio")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--sample_ratio", type=float, default=1.0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args)
        return

    from prettytable import PrettyTable

    runs: dict[float, list[dict]] = {ratio: [] for ratio in RATIOS}
    for _ in range(args.repeats):
        for ratio in RATIOS:  # alternate, so background load falls on both
            runs[ratio].append(run_worker(args, ratio))
    best = {ratio: {"step_s": min(r["step_s"] for r in found),
                    "peak_mb": max(r["peak_mb"] for r in found),
                    "state_mb": found[0]["state_mb"], "sampled": found[0]["sampled"]}
            for ratio, found in runs.items()}
    table = PrettyTable(["sample_ratio", "centres per step", "step time (s)",
                         "peak memory over baseline (MiB)", "of which centres + momentum"])
    for ratio in RATIOS:
        b = best[ratio]
        table.add_row([ratio, f"{b['sampled']:,}", f"{b['step_s']:.3f}", f"{b['peak_mb']:.0f}",
                       f"{b['state_mb']:.0f}"])
    print(f"Partial FC head, {args.classes:,} classes, embedding {args.dim}, batch {args.batch},"
          f" one process; best of {args.repeats} runs x median of {args.steps} steps")
    print(table)
    low, full = best[0.1], best[1.0]
    print(f"step time ratio (1.0 / 0.1): {full['step_s'] / low['step_s']:.2f}x")
    print(f"peak memory ratio (1.0 / 0.1): {full['peak_mb'] / low['peak_mb']:.2f}x")
    work = {r: best[r]["peak_mb"] - best[r]["state_mb"] for r in RATIOS}
    print(f"working memory beyond the centres (1.0 / 0.1): {work[1.0] / max(work[0.1], 1):.2f}x")


if __name__ == "__main__":
    main()
