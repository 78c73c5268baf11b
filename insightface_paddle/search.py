"""Exact search at memory speed: one blocked pass over the gallery, k best identities per query.

The gallery is one C-contiguous float32 matrix, so a block of rows is one contiguous slice whose
product with the queries streams straight from memory (measured the same as Fortran order, and
row gathers for rescoring stay cheap). The block's scores `[Q, B]` go into one reused buffer
that stays in cache; one max per query tells which queries have any row above their running
threshold (after the first blocks, rarely any), and only those rows are compared and kept. No
`[Q, N]` score matrix, no gather of it, no `argpartition` over N.

Identities, not rows: the k best identities of a query are the first k distinct labels met when
walking its rows from the best score down. The scan keeps every row scoring at least the
`want`-th best row's score; if those rows hold fewer than k identities (one person with many
near-identical photos) the query is scanned again keeping more, so the answer is always exact.

BLAS runs single-threaded inside one block and the blocks are shared among one Python thread per
core (numpy releases the GIL in the product and the comparison): many small multi-threaded BLAS
calls would spend their time waking threads.
"""
from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import numpy as np

from .workers import executor, parallel_workers

#: rows per block for a batch of 32 queries: 16384 x 128 float32 is 8 MB of gallery and the
#: scores [32, 16384] are 2 MB that stay in cache. Fewer queries take longer blocks (up to 8x,
#: the same bytes of scores): fewer blocks, less work between the products (a single query:
#: 33 ms with blocks of 16384 rows against 29 ms for a bare read of 1M x 128, 1.12x with 131072)
BLOCK_ROWS = 16384


#: galleries up to this many rows are scored whole, in one product, and each query's scores
#: sorted. There the blocked scan's bookkeeping (BLAS thread limits, running thresholds, a second
#: scan when one person's photos fill the shortlist) costs more than the work: 245 rows of 6
#: people, 6 queries: 0.16 ms whole against 0.7 blocked; at 1000 rows the sorts cost more than
#: the scan for 6 queries or more (0.6-4 ms against 0.4-3).
WHOLE_SCORE_ROWS = 512


def block_rows(n_queries: int) -> int:
    return BLOCK_ROWS * max(1, min(8, 32 // max(n_queries, 1)))


def gallery_layout(embeddings: np.ndarray) -> np.ndarray:
    """float32 [N, D], C-contiguous (no copy when it already is)."""
    return np.ascontiguousarray(embeddings, dtype=np.float32)


_controller = None
_lock = threading.Lock()


def _blas_single_thread() -> Any:
    """A context in which numpy's BLAS uses one thread.

    The threadpoolctl controller (which looks up the loaded BLAS libraries, ~ms) is made once.
    """
    global _controller
    with _lock:
        if _controller is None:
            from threadpoolctl import ThreadpoolController

            _controller = ThreadpoolController()
    return _controller.limit(limits=1, user_api="blas")


class _RunningBest:
    """One query's kept rows during a scan: every row scoring at least `threshold`, where the
    threshold only rises (to the `want`-th best kept score) once more than 4 * want are kept."""

    def __init__(self, want: int) -> None:
        self.want = want
        self.threshold = -np.inf
        self.rows: list[np.ndarray] = []
        self.scores: list[np.ndarray] = []
        self.count = 0

    def add(self, rows: np.ndarray, scores: np.ndarray) -> None:
        self.rows.append(rows)
        self.scores.append(scores)
        self.count += len(rows)
        if self.count > 4 * self.want:
            rows, scores = np.concatenate(self.rows), np.concatenate(self.scores)
            self.threshold = max(self.threshold,
                                 float(np.partition(scores, len(scores) - self.want)[-self.want]))
            keep = scores >= self.threshold
            self.rows, self.scores, self.count = [rows[keep]], [scores[keep]], int(keep.sum())


def _scan_blocks(gallery: np.ndarray, queries: np.ndarray, starts: list[int], rows: int,
                 want: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows of the blocks at `starts` that may be among each query's `want` best.

    -> (query number, row, score) of the kept rows. A row is dropped only when `want` rows of
    the same query already score higher, so every row of the true `want` best is kept.
    """
    n_queries = len(queries)
    best = [_RunningBest(want) for _ in range(n_queries)]
    threshold = np.full(n_queries, -np.inf, np.float32)
    # one score buffer for every full block: a fresh [Q, B] result per block would be a fresh
    # mapping of memory each time, and its page faults cost more than the product
    buffer = np.empty((n_queries, rows), np.float32)
    for start in starts:
        block = gallery[start:start + rows]
        scores = buffer if len(block) == rows else np.empty((n_queries, len(block)), np.float32)
        np.matmul(queries, block.T, out=scores)  # [Q, B]
        if start == starts[0] and scores.shape[1] > want:
            # the want-th best score of the first block is a safe first threshold
            threshold = np.partition(scores, scores.shape[1] - want, axis=1)[:, -want]
            for query, kth in enumerate(threshold.tolist()):
                best[query].threshold = kth
        # past the first blocks a query rarely has a row above its threshold: one max per query
        # finds those that do, and only their rows are compared
        for query in np.flatnonzero(scores.max(axis=1) >= threshold).tolist():
            mine = scores[query]
            columns = np.flatnonzero(mine >= threshold[query])
            best[query].add(columns + start, mine[columns])
            threshold[query] = best[query].threshold
    pieces = [(np.full(b.count, query), np.concatenate(b.rows), np.concatenate(b.scores))
              for query, b in enumerate(best) if b.rows]
    if not pieces:
        empty = np.zeros(0, np.int64)
        return empty, empty, np.zeros(0, np.float32)
    return tuple(np.concatenate(x) for x in zip(*pieces, strict=True))  # type: ignore[return-value]


def _split(n_rows: int, parts: int, rows: int) -> Iterator[list[int]]:
    starts = list(range(0, n_rows, rows))
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
    rows = block_rows(len(queries))
    parts = list(_split(n_rows, parallel_workers(), rows))
    with _blas_single_thread():
        if len(parts) == 1:
            pieces = [_scan_blocks(gallery, queries, parts[0], rows, want)]
        else:
            futures = [executor().submit(_scan_blocks, gallery, queries, p, rows, want)
                       for p in parts]
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


def top_identities(gallery: np.ndarray, identity_of_row: np.ndarray, num_identities: int,
                   queries: np.ndarray, k: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """-> per query (identity numbers, their best scores), the k best identities, best first.

    `identity_of_row` [N] numbers each row's identity 0..I-1 (I = `num_identities`, which the
    caller knows: finding it here would read all N numbers at every call). Exact either way: a
    gallery of up to WHOLE_SCORE_ROWS rows is scored in one product and sorted; a larger one is
    scanned in blocks keeping each query's best rows, and queries whose kept rows hold fewer than
    k identities are scanned again keeping eight times as many rows.
    """
    n_rows = len(gallery)
    k = min(k, num_identities if n_rows else 0)
    if n_rows <= WHOLE_SCORE_ROWS:
        scores = np.ascontiguousarray(queries, np.float32) @ gallery.T  # [Q, N]
        # a stable sort: ties go to the earlier row, as in the blocked scan
        orders = np.argsort(-scores, axis=1, kind="stable")
        return [first_identities(identity_of_row[order], row[order], k)
                for row, order in zip(scores, orders, strict=True)]
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
