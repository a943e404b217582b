"""Label-free performance estimation for binary classifiers (confidence-based, in the
spirit of NannyML's CBPE).

Scores are calibrated on a labelled reference window (isotonic regression or Platt
scaling). On an unlabelled window each request's calibrated probability ``p_i`` is the
chance its label is positive, so with predictions ``yhat_i = score_i >= threshold``:

* expected accuracy is ``mean(yhat_i * p_i + (1 - yhat_i) * (1 - p_i))`` with a normal
  interval from the Poisson-binomial variance ``sum(c_i (1 - c_i)) / n**2``;
* F1 comes from the expected confusion matrix, ROC AUC from the scores weighted by
  ``p_i`` as positives and ``1 - p_i`` as negatives; their intervals come from
  simulating labels ``~ Bernoulli(p_i)`` (seeded).

The estimate is valid under covariate shift as long as the calibration ``P(y | score)``
still holds (the model stays calibrated conditional on its inputs); it cannot see
concept drift. The intervals cover label sampling noise, not calibration error.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from scipy import stats
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from monitor._errors import EstimationError

CBPEMetric = Literal["accuracy", "f1", "roc_auc"]
Calibration = Literal["isotonic", "platt"]
_METRICS = ("accuracy", "f1", "roc_auc")
_EPS = 1e-6


@dataclass(frozen=True, kw_only=True)
class Estimate:
    """An estimated metric on an unlabelled window with its interval (``confidence``)."""

    metric: CBPEMetric
    value: float
    ci_lo: float
    ci_hi: float
    n: int


def _scores(values: Any, name: str) -> np.ndarray:
    """A binary model's positive-class scores: ``[n]``, ``[n, 1]`` or the second column
    of ``[n, 2]``. Any other shape is refused: a multiclass ``[n, 3]`` was flattened into
    ``3 n`` scores and estimated as that many binary requests."""
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim == 2 and arr.shape[1] == 2:
        arr = arr[:, 1]
    elif arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    elif arr.ndim != 1:
        raise EstimationError(
            f"`{name}` must be of shape [n], [n, 1] or [n, 2] (a binary model's scores), "
            f"got shape {list(arr.shape)}"
        )
    if not np.all(np.isfinite(arr)):
        raise EstimationError(f"`{name}` must be finite")
    return arr


class CBPE:
    """Confidence-based performance estimation for one binary classifier.

    ``threshold`` turns scores into predicted labels (``score >= threshold`` is
    positive): the decisions whose accuracy and F1 are estimated, so the model's own
    operating point, not 0.5 when it decides elsewhere. ``calibration`` is ``"isotonic"``
    (default; needs a few hundred reference rows) or ``"platt"`` (logistic on the score's
    logit). ``n_simulations`` label draws give the F1/ROC-AUC intervals.
    """

    def __init__(
        self,
        *,
        threshold: float = 0.5,
        calibration: Calibration = "isotonic",
        confidence: float = 0.95,
        n_simulations: int = 200,
        seed: int = 0,
    ) -> None:
        if calibration not in ("isotonic", "platt"):
            raise EstimationError(
                f"`calibration` must be one of 'isotonic', 'platt', got {calibration!r}"
            )
        if not 0 < confidence < 1:
            raise EstimationError(f"`confidence` must be in (0, 1), got {confidence}")
        if n_simulations < 20:
            raise EstimationError(f"`n_simulations` must be at least 20, got {n_simulations}")
        if np.isnan(threshold):  # else every request was decided negative, silently
            raise EstimationError(f"`threshold` must be a number, got {threshold}")
        self.threshold = float(threshold)
        self.calibration: Calibration = calibration
        self.confidence = confidence
        self.n_simulations = n_simulations
        self.seed = seed
        self._isotonic: IsotonicRegression | None = None
        self._platt: LogisticRegression | None = None

    def fit(self, ref_scores: Any, ref_labels: Any) -> CBPE:
        """Calibrate on a labelled reference window (labels 0/1); returns ``self``."""
        scores = _scores(ref_scores, "ref_scores")
        labels = np.asarray(ref_labels).reshape(-1)
        if labels.shape[0] != scores.shape[0]:
            raise EstimationError(
                f"{scores.shape[0]} reference scores but {labels.shape[0]} labels"
            )
        if not np.isin(labels, (0, 1)).all():
            raise EstimationError("`ref_labels` must be 0/1")
        if np.unique(labels).size < 2:
            raise EstimationError("`ref_labels` must contain both classes to calibrate")
        y = labels.astype(np.float64)
        if self.calibration == "isotonic":
            self._isotonic = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip")
            self._isotonic.fit(scores, y)
        else:
            self._platt = LogisticRegression()
            self._platt.fit(self._logit(scores), labels.astype(np.int64))
        return self

    @staticmethod
    def _logit(scores: np.ndarray) -> np.ndarray:
        p = np.clip(scores, _EPS, 1 - _EPS)
        logit: np.ndarray = np.log(p / (1 - p)).reshape(-1, 1)
        return logit

    def calibrated(self, scores: Any) -> np.ndarray:
        """Calibrated positive-class probabilities of ``scores``."""
        s = _scores(scores, "scores")
        if self._isotonic is not None:
            return np.asarray(self._isotonic.predict(s), dtype=np.float64)
        if self._platt is not None:
            return np.asarray(self._platt.predict_proba(self._logit(s))[:, 1], dtype=np.float64)
        raise EstimationError("CBPE is not fitted: call fit(ref_scores, ref_labels) first")

    def estimate(self, scores: Any, *, metric: CBPEMetric = "accuracy") -> Estimate:
        """Estimate ``metric`` on an unlabelled window of scores."""
        if metric not in _METRICS:
            raise EstimationError(f"`metric` must be one of {', '.join(_METRICS)}, got {metric!r}")
        s = _scores(scores, "scores")
        if s.size == 0:
            raise EstimationError("no scores to estimate from")
        p = self.calibrated(s)
        yhat = s >= self.threshold
        z = float(_normal_quantile(0.5 + self.confidence / 2))
        if metric == "accuracy":
            correct = np.where(yhat, p, 1 - p)
            value = float(correct.mean())
            half = z * float(np.sqrt(np.sum(correct * (1 - correct)))) / s.size
            return Estimate(
                metric=metric,
                value=value,
                ci_lo=max(0.0, value - half),
                ci_hi=min(1.0, value + half),
                n=int(s.size),
            )
        value = _expected_f1(p, yhat) if metric == "f1" else _expected_auc(s, p)
        rng = np.random.default_rng(self.seed)
        draws = []
        for _ in range(self.n_simulations):
            y = rng.random(s.size) < p
            if metric == "f1":
                tp = float(np.sum(y & yhat))
                denom = 2 * tp + float(np.sum(~y & yhat)) + float(np.sum(y & ~yhat))
                draws.append(2 * tp / denom if denom else 0.0)
            elif 0 < y.sum() < y.size:
                draws.append(float(roc_auc_score(y, s)))
        if not draws:
            return Estimate(metric=metric, value=value, ci_lo=value, ci_hi=value, n=int(s.size))
        tail = (1 - self.confidence) / 2
        lo, hi = np.quantile(draws, [tail, 1 - tail])
        return Estimate(metric=metric, value=value, ci_lo=float(lo), ci_hi=float(hi), n=int(s.size))


def _normal_quantile(q: float) -> float:
    return float(stats.norm.ppf(q))


def _expected_f1(p: np.ndarray, yhat: np.ndarray) -> float:
    tp = float(np.sum(p * yhat))
    fp = float(np.sum((1 - p) * yhat))
    fn = float(np.sum(p * ~yhat))
    denom = 2 * tp + fp + fn
    return 2 * tp / denom if denom else 0.0


def _expected_auc(scores: np.ndarray, p: np.ndarray) -> float:
    if p.sum() <= 0 or (1 - p).sum() <= 0:
        raise EstimationError("ROC AUC is undefined: every calibrated probability is 0 or 1")
    y = np.r_[np.ones(scores.size), np.zeros(scores.size)]
    return float(roc_auc_score(y, np.r_[scores, scores], sample_weight=np.r_[p, 1 - p]))
