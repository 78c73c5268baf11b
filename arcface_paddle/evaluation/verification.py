"""The 10-fold verification protocol used for LFW, CFP-FP and AgeDB-30.

Same as insightface's `verification.py`, so numbers compare with published tables: pairs are
split into 10 contiguous folds; for each fold the squared-L2 threshold (0 to 4 in steps of 0.01
over unit embeddings) that is best on the other 9 folds is applied to it; the accuracy is the
mean over folds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from insightface_paddle.recognition import l2_normalize

THRESHOLDS = np.arange(0.0, 4.0, 0.01)


@dataclass(frozen=True)
class VerificationResult:
    accuracy: float
    accuracy_std: float
    #: mean over folds of the chosen threshold, as a cosine similarity
    cosine_threshold: float
    fold_accuracies: tuple[float, ...]

    def as_dict(self) -> dict[str, float]:
        return {
            "accuracy": self.accuracy,
            "accuracy_std": self.accuracy_std,
            "cosine_threshold": self.cosine_threshold,
        }


def pair_cosine(embeddings: np.ndarray) -> np.ndarray:
    """embeddings [2N, D] laid out as (a0, b0, a1, b1, ...) -> cosine of each pair [N],
    computed in float64 whatever the embeddings' dtype."""
    emb = l2_normalize(np.asarray(embeddings, dtype=np.float64))
    if emb.shape[0] % 2:
        raise ValueError(f"need an even number of embeddings, got {emb.shape[0]}")
    return np.sum(emb[0::2] * emb[1::2], axis=1)


def ten_fold_accuracy(cosine: np.ndarray, issame: np.ndarray, n_folds: int = 10
                      ) -> VerificationResult:
    """cosine [N] similarity of each pair, issame [N] bool -> k-fold accuracy."""
    cosine = np.asarray(cosine, dtype=np.float64).reshape(-1)
    issame = np.asarray(issame, dtype=bool).reshape(-1)
    if cosine.shape != issame.shape:
        raise ValueError(f"{cosine.shape[0]} similarities but {issame.shape[0]} labels")
    if cosine.size < n_folds:
        raise ValueError(f"need at least {n_folds} pairs, got {cosine.size}")
    dist = 2.0 - 2.0 * cosine  # squared L2 distance of unit vectors
    # correct[t, i]: does threshold t classify pair i correctly
    correct = (dist[None, :] < THRESHOLDS[:, None]) == issame[None, :]
    folds = np.array_split(np.arange(cosine.size), n_folds)
    accuracies, thresholds = [], []
    for test in folds:
        train = np.ones(cosine.size, dtype=bool)
        train[test] = False
        best = int(np.argmax(correct[:, train].mean(axis=1)))
        accuracies.append(float(correct[best, test].mean()))
        thresholds.append(THRESHOLDS[best])
    return VerificationResult(
        accuracy=float(np.mean(accuracies)),
        accuracy_std=float(np.std(accuracies)),
        cosine_threshold=float(1.0 - np.mean(thresholds) / 2.0),
        fold_accuracies=tuple(accuracies),
    )
