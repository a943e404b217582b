"""Where an objective decides a binary model's request positive."""

from __future__ import annotations

import numpy as np

from monitor.objectives._base import Objective
from monitor.objectives._probabilistic import Accuracy, CostWeightedError
from monitor.objectives._ranking import FBeta


def decision_threshold(objective: Objective) -> float | None:
    """The positive-class probability at or above which ``objective`` decides a binary
    model's request positive: the decisions the label-free accuracy is of.

    Accuracy and F-beta decide at their ``threshold``; a cost matrix ``cost[true][pred]``
    decides positive where that costs less, ``(1 - p) * fp < p * fn`` with ``fp`` and
    ``fn`` what each error costs beyond the right decision, so above ``fp / (fp + fn)``
    (a tie decides negative). An objective that makes no decision (log loss, Brier, the
    ranking metrics) is read at 0.5. ``None`` when the decision is positive *below* a
    threshold, which a threshold cannot express."""
    if isinstance(objective, Accuracy | FBeta):
        return float(objective.threshold)
    if isinstance(objective, CostWeightedError):
        (c00, c01), (c10, c11) = objective.cost_matrix
        fp, fn = float(c01 - c00), float(c10 - c11)
        if fp + fn > 0:  # "above": the next float up is the first one decided positive
            return float(np.nextafter(fp / (fp + fn), np.inf))
        if fp + fn == 0:  # the same decision at every probability
            return 0.0 if fp < 0 else float(np.nextafter(1.0, np.inf))
        return None
    return 0.5
