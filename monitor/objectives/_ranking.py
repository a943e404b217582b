"""Whole-sample metrics of a binary model: no per-request loss.

Monitoring (decay windows) and tuning (cross-validation) use all of them; between versions
only ROC AUC is compared, by a group-sequential DeLong test. PR AUC, F-beta, recall at a
precision floor and precision at a recall floor are not compared (no paired, split or
DeLong test fits them)."""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from monitor.objectives._base import Objective, ObjectiveError, check_lengths, positive_proba
from monitor.objectives._params import FLOOR, THRESHOLD, NumberRule


def _binary(y_true: np.ndarray, y_pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    t, p = check_lengths(y_true, y_pred)
    labels = np.asarray(t, dtype=np.float64).reshape(-1)
    if not np.isin(labels, (0.0, 1.0)).all():
        raise ObjectiveError("binary labels must be 0 or 1")
    return labels.astype(np.int64), positive_proba(p)


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Mann–Whitney AUC with midranks for ties."""
    from scipy.stats import rankdata

    n_pos = int(labels.sum())
    n_neg = len(labels) - n_pos
    if n_pos == 0 or n_neg == 0:
        raise ObjectiveError("ROC AUC needs both classes in the window")
    ranks = rankdata(scores)
    return float((ranks[labels == 1].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _curve(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Precision, recall and thresholds at every distinct score, highest first."""
    order = np.argsort(-scores, kind="mergesort")
    s, y = scores[order], labels[order]
    distinct = np.r_[np.nonzero(np.diff(s))[0], len(s) - 1]
    tp = np.cumsum(y)[distinct]
    fp = (distinct + 1) - tp
    total_pos = labels.sum()
    if total_pos == 0:
        raise ObjectiveError("precision/recall metrics need positive labels in the window")
    return tp / (tp + fp), tp / total_pos, s[distinct]


class _BinaryRanking(Objective):
    """A whole-sample metric of a binary model: a label is 0 or 1."""

    def classes(self, y_pred: np.ndarray) -> int | None:
        return 2


class RocAuc(_BinaryRanking):
    name: ClassVar[str] = "roc_auc"
    greater_is_better: ClassVar[bool] = True
    tasks: ClassVar[frozenset[str]] = frozenset({"binary"})

    def value(self, y_true: np.ndarray, y_pred: np.ndarray) -> float:
        return roc_auc(*_binary(y_true, y_pred))


class PrAuc(_BinaryRanking):
    """Average precision (step-wise area under the precision-recall curve)."""

    name: ClassVar[str] = "pr_auc"
    greater_is_better: ClassVar[bool] = True
    tasks: ClassVar[frozenset[str]] = frozenset({"binary"})

    def value(self, y_true: np.ndarray, y_pred: np.ndarray) -> float:
        precision, recall, _ = _curve(*_binary(y_true, y_pred))
        return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


MAX_BETA = 1e100
# beta**2 must be a float: past 1e154 it overflowed at every evaluation (and an F-beta
# that far out is recall)
BETA = NumberRule(0.0, MAX_BETA, high_closed=True, finite_said=True)


class FBeta(_BinaryRanking):
    """F-beta of the predictions at ``threshold``. A window with no positive label and no
    positive prediction raises :class:`ObjectiveError` (precision and recall are both
    0/0), as PR AUC does without positives, so it sits out a trend: scored 0.0, the worst
    value, such windows made an unchanged rare-positive model trend as decaying."""

    name: ClassVar[str] = "f_beta"
    greater_is_better: ClassVar[bool] = True
    tasks: ClassVar[frozenset[str]] = frozenset({"binary"})
    parameters: ClassVar[dict[str, object]] = {"beta": BETA, "threshold": THRESHOLD}

    def __init__(self, *, beta: float = 1.0, threshold: float = 0.5) -> None:
        self.beta = BETA.check("beta", beta)
        self.threshold = THRESHOLD.check("threshold", threshold)

    def value(self, y_true: np.ndarray, y_pred: np.ndarray) -> float:
        labels, p = _binary(y_true, y_pred)
        pred = p >= self.threshold
        tp = float((pred & (labels == 1)).sum())
        fp = float((pred & (labels == 0)).sum())
        fn = float((~pred & (labels == 1)).sum())
        if tp + fp + fn == 0:  # precision and recall both 0/0: no mistake, no hit
            raise ObjectiveError(
                "F-beta needs a positive label or a positive prediction in the window, got "
                f"no positive label and no positive prediction at threshold {self.threshold}"
            )
        b2 = self.beta**2
        return (1 + b2) * tp / ((1 + b2) * tp + b2 * fn + fp)


class RecallAtPrecision(_BinaryRanking):
    """Best recall among thresholds whose precision is at least ``min_precision``; 0.0
    when no threshold reaches it (as Keras's ``RecallAtPrecision``: the floor is
    unreachable, so nothing is recalled at it)."""

    name: ClassVar[str] = "recall_at_precision"
    greater_is_better: ClassVar[bool] = True
    tasks: ClassVar[frozenset[str]] = frozenset({"binary"})
    parameters: ClassVar[dict[str, object]] = {"min_precision": FLOOR}

    def __init__(self, *, min_precision: float) -> None:
        self.min_precision = FLOOR.check("min_precision", min_precision)

    def value(self, y_true: np.ndarray, y_pred: np.ndarray) -> float:
        precision, recall, _ = _curve(*_binary(y_true, y_pred))
        ok = precision >= self.min_precision
        return float(recall[ok].max()) if ok.any() else 0.0


class PrecisionAtRecall(_BinaryRanking):
    """Best precision among thresholds whose recall is at least ``min_recall``."""

    name: ClassVar[str] = "precision_at_recall"
    greater_is_better: ClassVar[bool] = True
    tasks: ClassVar[frozenset[str]] = frozenset({"binary"})
    parameters: ClassVar[dict[str, object]] = {"min_recall": FLOOR}

    def __init__(self, *, min_recall: float) -> None:
        self.min_recall = FLOOR.check("min_recall", min_recall)

    def value(self, y_true: np.ndarray, y_pred: np.ndarray) -> float:
        precision, recall, _ = _curve(*_binary(y_true, y_pred))
        ok = recall >= self.min_recall
        return float(precision[ok].max()) if ok.any() else 0.0
