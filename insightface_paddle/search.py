"""Exact search at memory speed: one blocked pass over the gallery, k best identities per query.

The gallery is one C-contiguous float32 matrix, so a block of rows is one contiguous slice whose
product with the queries streams straight from memory (measured the same as Fortran order, and
row gathers for rescoring stay cheap); the block's scores `[Q, B]` stay in cache while the rows
that can still be among the best are picked out with one comparison against a running per-query
threshold. No `[Q, N]` score matrix, no
gather of it, no `argpartition` over N.

Identities, not rows: the k best identities of a query are the first k distinct labels met when
walking its rows from the best score down. The scan keeps every row scoring at least the
`want`-th best row's score; if those rows hold fewer than k identities (one person with many
near-identical photos) the query is scanned again keeping more, so the answer is always exact.

BLAS runs single-threaded inside one block and the blocks are shared among one Python thread per
core (numpy releases the GIL in the product and the comparison): many small multi-threaded BLAS
calls would spend their time waking threads.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

#: rows per block: 32768 x 128 float32 is 16 MB of gallery and, for 32 queries, 4 MB of scores
BLOCK_ROWS = 32768

_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def gallery_layout(embeddings: np.ndarray) -> np.ndarray:
    """float32 [N, D], C-contiguous (no copy when it already is)."""
    return np.ascontiguousarray(embeddings, dtype=np.float32)


def _workers() -> int:
    return max(1, min(4, os.cpu_count() or 1))


def _executor() -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(_workers(), thread_name_prefix="insightface-search")
        return _pool


_controller = None


def _blas_single_thread() -> Any:
    """A context in which numpy's BLAS uses one thread.

    The threadpoolctl controller (which looks up the loaded BLAS libraries, ~ms) is made once.
    """
    global _controller
    with _pool_lock:
        if _controller is None:
            from threadpoolctl import ThreadpoolController

            _controller = ThreadpoolController()
    return _controller.limit(limits=1, user_api="blas")


def _scan_blocks(gallery: np.ndarray, queries: np.ndarray, starts: list[int], want: int,
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows of the blocks at `starts` that may be among each query's `want` best.

    -> (query number, row, score) of the kept rows. A row is dropped only when `want` rows of
    the same query already score higher, so every row of the true `want` best is kept.
    """
    n_queries = len(queries)
    threshold = np.full(n_queries, -np.inf, np.float32)
    kept_q: list[np.ndarray] = []
    kept_r: list[np.ndarray] = []
    kept_s: list[np.ndarray] = []
    pending = 0
    for start in starts:
        block = gallery[start:start + BLOCK_ROWS]
        scores = queries @ block.T  # [Q, B]
        if not np.isfinite(threshold).all() and scores.shape[1] > want:
            # the want-th best score of this block is a safe first threshold
            kth = np.partition(scores, scores.shape[1] - want, axis=1)[:, -want]
            threshold = np.maximum(threshold, kth)
        q, r = np.nonzero(scores >= threshold[:, None])
        kept_q.append(q)
        kept_r.append(r + start)
        kept_s.append(scores[q, r])
        pending += len(q)
        if pending > 16 * want * n_queries:  # tighten: keep only each query's want best so far
            q, r, s = (np.concatenate(x) for x in (kept_q, kept_r, kept_s))
            keep, threshold = _tighten(q, s, want, threshold)
            kept_q, kept_r, kept_s = [q[keep]], [r[keep]], [s[keep]]
            pending = int(keep.sum())
    return tuple(np.concatenate(x) for x in (kept_q, kept_r, kept_s))  # type: ignore[return-value]


def _tighten(q: np.ndarray, s: np.ndarray, want: int, threshold: np.ndarray,
             ) -> tuple[np.ndarray, np.ndarray]:
    """Raise each query's threshold to its want-th best kept score; -> (rows to keep, threshold)."""
    threshold = threshold.copy()
    for query in np.unique(q):
        mine = s[q == query]
        if len(mine) > want:
            threshold[query] = max(threshold[query], np.partition(mine, len(mine) - want)[-want])
    return s >= threshold[q], threshold


def _split(n_rows: int, parts: int) -> Iterator[list[int]]:
    starts = list(range(0, n_rows, BLOCK_ROWS))
    for part in range(parts):
        if starts[part::parts]:
            yield starts[part::parts]


def top_rows(gallery: np.ndarray, queries: np.ndarray, want: int,
             ) -> list[tuple[np.ndarray, np.ndarray]]:
    """gallery [N, D] (see `gallery_layout`), queries [Q, D] -> per query (rows, scores), best
    first, holding every row that scores at least the query's `want`-th best score."""
    queries = np.ascontiguousarray(queries, np.float32)
    n_rows = len(gallery)
    want = max(1, min(want, n_rows))
    parts = list(_split(n_rows, _workers()))
    with _blas_single_thread():
        if len(parts) == 1:
            pieces = [_scan_blocks(gallery, queries, parts[0], want)]
        else:
            futures = [_executor().submit(_scan_blocks, gallery, queries, p, want) for p in parts]
            pieces = [f.result() for f in futures]
    q, r, s = (np.concatenate(x) for x in zip(*pieces, strict=True))
    order = np.lexsort((r, -s, q))  # by query, best score first, ties by row
    q, r, s = q[order], r[order], s[order]
    bounds = np.searchsorted(q, np.arange(len(queries) + 1))
    out = []
    for query in range(len(queries)):
        rows, scores = r[bounds[query]:bounds[query + 1]], s[bounds[query]:bounds[query + 1]]
        if len(rows) > want:  # a part kept rows another part's better ones make irrelevant
            cut = scores[want - 1]
            stop = int(np.searchsorted(-scores, -cut, side="right"))
            rows, scores = rows[:stop], scores[:stop]
        out.append((rows, scores))
    return out


def first_identities(ids: np.ndarray, scores: np.ndarray, k: int,
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Identity numbers of rows sorted best first -> the first k distinct ones and their scores
    (an identity's score is that of its best row)."""
    _, first = np.unique(ids, return_index=True)
    first = np.sort(first)[:k]
    return ids[first], scores[first]


def top_identities(gallery: np.ndarray, identity_of_row: np.ndarray, queries: np.ndarray,
                   k: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """-> per query (identity numbers, their best scores), the k best identities, best first.

    `identity_of_row` [N] numbers each row's identity 0..I-1. Exact: queries whose kept rows hold
    fewer than k identities are scanned again keeping eight times as many rows.
    """
    n_rows = len(gallery)
    k = min(k, int(identity_of_row.max()) + 1 if n_rows else 0)
    results: list[tuple[np.ndarray, np.ndarray] | None] = [None] * len(queries)
    todo = np.arange(len(queries))
    want = 4 * k
    while len(todo):
        again = []
        for query, (rows, scores) in zip(todo, top_rows(gallery, queries[todo], want), strict=True):
            ids, best = first_identities(identity_of_row[rows], scores, k)
            if len(ids) >= k or want >= n_rows:
                results[query] = (ids, best)
            else:
                again.append(query)
        todo, want = np.asarray(again, dtype=int), min(n_rows, want * 8)
    return results  # type: ignore[return-value]
