"""The 10-fold protocol against a direct, loop-by-loop restatement of insightface's."""

from __future__ import annotations

import numpy as np
import pytest

from arcface_paddle.evaluation import pair_cosine, ten_fold_accuracy


def _reference(cosine, issame, n_folds=10):
    dist = 2 - 2 * cosine
    thresholds = np.arange(0, 4, 0.01)
    n = len(cosine)
    sizes = [n // n_folds + (1 if i < n % n_folds else 0) for i in range(n_folds)]
    starts = np.cumsum([0, *sizes])
    accs = []
    for f in range(n_folds):
        test = np.arange(starts[f], starts[f + 1])
        train = np.setdiff1d(np.arange(n), test)
        best_t, best_acc = None, -1.0
        for t in thresholds:
            acc = np.mean((dist[train] < t) == issame[train])
            if acc > best_acc:
                best_t, best_acc = t, acc
        accs.append(np.mean((dist[test] < best_t) == issame[test]))
    return float(np.mean(accs))


@pytest.mark.parametrize("n_pairs", [600, 613])
def test_matches_reference(n_pairs):
    rng = np.random.default_rng(n_pairs)
    issame = rng.random(n_pairs) < 0.5
    cosine = np.where(issame, 0.5, 0.1) + rng.normal(0, 0.2, n_pairs)
    result = ten_fold_accuracy(cosine, issame)
    assert result.accuracy == pytest.approx(_reference(cosine, issame), abs=1e-12)
    assert 0.7 < result.accuracy < 0.95
    assert len(result.fold_accuracies) == 10


def test_separable_pairs_score_one_and_random_pairs_half():
    rng = np.random.default_rng(1)
    issame = np.tile([True, False], 300)
    assert ten_fold_accuracy(np.where(issame, 0.9, 0.0), issame).accuracy == 1.0
    chance = ten_fold_accuracy(rng.uniform(-1, 1, 600), issame).accuracy
    assert 0.4 < chance < 0.6


def test_pair_cosine_interleaved():
    emb = np.array([[1, 0], [2, 0], [0, 3], [1, 0]], dtype=np.float32)
    np.testing.assert_allclose(pair_cosine(emb), [1.0, 0.0], atol=1e-12)
    with pytest.raises(ValueError):
        pair_cosine(emb[:3])


def test_pair_cosine_is_computed_in_float64_for_float32_embeddings():
    """Thresholds sit 0.01 apart in squared distance: float32 rounding must not move a pair."""
    emb = np.random.default_rng(2).normal(size=(40, 128)).astype(np.float32)
    cosine = pair_cosine(emb)
    assert cosine.dtype == np.float64
    wide = emb.astype(np.float64)
    unit = wide / np.linalg.norm(wide, axis=1, keepdims=True)
    np.testing.assert_allclose(cosine, np.sum(unit[0::2] * unit[1::2], axis=1), rtol=0,
                               atol=1e-15)


def test_auc_is_the_chance_a_genuine_pair_outscores_an_impostor():
    rng = np.random.default_rng(5)
    issame = rng.random(400) < 0.5
    cosine = np.round(np.where(issame, 0.4, 0.1) + rng.normal(0, 0.2, 400), 2)  # with ties
    genuine, impostor = cosine[issame], cosine[~issame]
    wins = (genuine[:, None] > impostor[None, :]).mean()
    ties = (genuine[:, None] == impostor[None, :]).mean()
    assert ten_fold_accuracy(cosine, issame).auc == pytest.approx(wins + ties / 2, abs=1e-12)


def test_tar_at_far_counts_genuine_pairs_above_the_impostor_quantile():
    impostor = np.linspace(-0.5, 0.5, 2000)  # FAR 1e-3 lets the top 2 impostors pass
    genuine = np.array([0.499, 0.4985, 0.4990001, 0.6, 0.2])
    cosine = np.r_[genuine, impostor]
    issame = np.r_[np.ones(5, bool), np.zeros(2000, bool)]
    tars = dict(ten_fold_accuracy(cosine, issame).tar_at_far)
    third_highest = impostor[-3]
    assert tars[1e-3] == pytest.approx(np.mean(genuine > third_highest))
    assert tars[1e-4] == pytest.approx(np.mean(genuine > impostor[-1]))  # no impostor passes


def test_thresholds_agree_as_distance_and_cosine():
    issame = np.tile([True, False], 50)
    result = ten_fold_accuracy(np.where(issame, 0.8, 0.1), issame)
    assert result.cosine_threshold == pytest.approx(1 - result.distance_threshold / 2)
    assert 0.1 < result.cosine_threshold <= 0.8
