"""The 10-fold verification protocol used for LFW, CFP-FP and AgeDB-30.

Same as insightface's `verification.py`, so numbers compare with published tables: pairs are
split into 10 contiguous folds; for each fold the squared-L2 threshold (0 to 4 in steps of 0.01
over unit embeddings) that is best on the other 9 folds is applied to it; the accuracy is the
mean over folds.

Beside it, on all pairs at once: TAR at fixed FARs, the ROC curve and its area; these need no
folds (they pick no threshold on the pairs they score).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from insightface_paddle.recognition import l2_normalize

THRESHOLDS = np.arange(0.0, 4.0, 0.01)
#: false accept rates at which the true accept rate is reported
FARS = (1e-3, 1e-4)


@dataclass(frozen=True)
class VerificationResult:
    accuracy: float
    accuracy_std: float
    #: mean over folds of the chosen threshold, as a cosine similarity
    cosine_threshold: float
    fold_accuracies: tuple[float, ...]
    #: the same threshold as the protocol states it: squared L2 distance of unit embeddings
    distance_threshold: float = float("nan")
    #: (far, tar) for each of FARS: the share of genuine pairs accepted at the strictest
    #: cosine threshold whose impostor acceptance is <= far
    tar_at_far: tuple[tuple[float, float], ...] = ()
    #: area under the ROC curve
    auc: float = float("nan")

    def as_dict(self) -> dict[str, float]:
        return {
            "accuracy": self.accuracy,
            "accuracy_std": self.accuracy_std,
            "distance_threshold": self.distance_threshold,
            "cosine_threshold": self.cosine_threshold,
            **{f"tar_at_far_{far:g}": tar for far, tar in self.tar_at_far},
            "auc": self.auc,
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
    distance_threshold = float(np.mean(thresholds))
    return VerificationResult(
        accuracy=float(np.mean(accuracies)),
        accuracy_std=float(np.std(accuracies)),
        cosine_threshold=1.0 - distance_threshold / 2.0,
        fold_accuracies=tuple(accuracies),
        distance_threshold=distance_threshold,
        tar_at_far=tuple((far, tar_at_far(cosine, issame, far)) for far in FARS),
        auc=roc_auc(cosine, issame),
    )


def tar_at_far(cosine: np.ndarray, issame: np.ndarray, far: float) -> float:
    """Share of genuine pairs with cosine above the threshold that accepts at most `far` of the
    impostor pairs (accept = cosine strictly above it). With few impostors the reachable FAR is
    coarse (1 / impostors): below that, no impostor may pass."""
    impostors = np.sort(cosine[~issame])[::-1]
    genuine = cosine[issame]
    if not len(impostors) or not len(genuine):
        return float("nan")
    allowed = int(np.floor(far * len(impostors)))  # impostors that may pass
    threshold = impostors[allowed] if allowed < len(impostors) else -np.inf
    return float(np.mean(genuine > threshold))


def roc_curve(cosine: np.ndarray, issame: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """-> (false accept rate [K], true accept rate [K]) over every distinct threshold, from
    (0, 0) to (1, 1)."""
    order = np.argsort(-cosine, kind="stable")
    scores, labels = cosine[order], issame[order]
    last_of_tie = np.r_[np.diff(scores) != 0, True]
    tp = np.cumsum(labels)[last_of_tie]
    fp = np.cumsum(~labels)[last_of_tie]
    tpr = np.r_[0.0, tp / max(int(labels.sum()), 1)]
    fpr = np.r_[0.0, fp / max(int((~labels).sum()), 1)]
    return fpr, tpr


def roc_auc(cosine: np.ndarray, issame: np.ndarray) -> float:
    """Area under the ROC curve: the chance that a genuine pair scores above an impostor pair
    (ties count half)."""
    if issame.all() or not issame.any():
        return float("nan")
    fpr, tpr = roc_curve(cosine, issame)
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))
