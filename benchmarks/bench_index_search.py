"""Query latency of exact and approximate (faiss IVF) search on a 1,000,000 x 128 gallery.

A random gallery of unit vectors (one identity per 4 entries); queries are noisy copies of gallery
entries, so the right answer is known. Both searches go through `FaceIndex.search` (with the
per-identity grouping and result objects) and run side by side on the same queries; printed:
latency per query for one query and for a batch, the approximate mode's agreement with exact
search, and the speed ratio.
Run: python benchmarks/bench_index_search.py [--entries 1000000]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from prettytable import PrettyTable

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from insightface_paddle.index import FaceIndex
from insightface_paddle.recognition import ModelSignature


def per_query_ms(index: FaceIndex, queries: np.ndarray, batch: int, approximate: bool,
                 k: int = 5) -> tuple[float, list]:
    results, times = [], []
    for start in range(0, len(queries), batch):
        chunk = queries[start:start + batch]
        began = time.perf_counter()
        results += index.search(chunk, index.model, k=k, approximate=approximate)
        times.append((time.perf_counter() - began) / len(chunk))
    return float(np.median(times)) * 1000, results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--queries", type=int, default=200)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    model = ModelSignature("random", "0" * 64, args.dim)
    gallery = rng.standard_normal((args.entries, args.dim), dtype=np.float32)
    labels = [f"id{i // 4}" for i in range(args.entries)]
    index = FaceIndex(model)
    began = time.perf_counter()
    index.add(labels, gallery)
    add_s = time.perf_counter() - began
    picks = rng.choice(args.entries, args.queries, replace=False)
    queries = gallery[picks] + 0.5 * rng.standard_normal((args.queries, args.dim), np.float32)
    truth = [labels[i] for i in picks]

    index.search(queries[:1], model, approximate=False)  # builds the identity grouping
    began = time.perf_counter()
    index.search(queries[:1], model, approximate=True)  # trains and fills the IVF index
    build_s = time.perf_counter() - began

    table = PrettyTable(["search", "batch", "ms per query", "top-1 correct", "agrees w/ exact"])
    timings = {}
    for batch in (1, 32):
        exact_ms, exact = per_query_ms(index, queries, batch, approximate=False)
        approx_ms, approx = per_query_ms(index, queries, batch, approximate=True)
        timings[batch] = exact_ms / approx_ms
        agree = np.mean([e[0].label == a[0].label for e, a in zip(exact, approx)])
        for name, ms, res in (("exact", exact_ms, exact), ("approximate", approx_ms, approx)):
            correct = np.mean([r[0].label == t for r, t in zip(res, truth)])
            table.add_row([name, batch, f"{ms:.2f}", f"{correct:.3f}",
                           "-" if name == "exact" else f"{agree:.3f}"])
    print(f"gallery {args.entries:,} x {args.dim} ({len(index.identities):,} identities); "
          f"adding took {add_s:.1f} s, building the faiss IVF index {build_s:.1f} s")
    print(table)
    for batch, ratio in timings.items():
        print(f"exact / approximate latency, batch {batch}: {ratio:.1f}x")


if __name__ == "__main__":
    main()
