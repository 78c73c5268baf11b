"""Evaluation: the one implementation of the 10-fold verification protocol."""

from .verification import VerificationResult, pair_cosine, ten_fold_accuracy

__all__ = ["VerificationResult", "pair_cosine", "ten_fold_accuracy"]
