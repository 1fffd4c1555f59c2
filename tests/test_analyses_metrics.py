"""OOD metric wrappers agree with scikit-learn and with their definitions on random scores."""
from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from latentfield.probe.analyses.ood_metrics import aupr_in, aupr_out, auroc, fpr_at_tpr, ood_metrics


def _fpr95_by_definition(s_in: np.ndarray, s_out: np.ndarray) -> float:
    # Accept x as in-distribution when score <= t; take the smallest t accepting >= 95% of s_in.
    for t in np.sort(np.unique(np.r_[s_in, s_out])):
        if (s_in <= t).mean() >= 0.95:
            return float((s_out <= t).mean())
    raise AssertionError


@pytest.mark.parametrize("seed", range(5))
def test_metrics_agree_with_sklearn_on_random_scores(seed):
    rng = np.random.default_rng(seed)
    s_in = rng.normal(0, 1, rng.integers(20, 200))
    s_out = rng.normal(rng.uniform(-0.5, 2), 1.3, rng.integers(20, 200))
    if seed == 4:  # heavy ties
        s_in, s_out = np.round(s_in), np.round(s_out)
    y = np.r_[np.zeros(len(s_in)), np.ones(len(s_out))]
    s = np.r_[s_in, s_out]
    assert auroc(s_in, s_out) == pytest.approx(roc_auc_score(y, s))
    assert aupr_out(s_in, s_out) == pytest.approx(average_precision_score(y, s))
    assert aupr_in(s_in, s_out) == pytest.approx(average_precision_score(1 - y, -s))
    assert fpr_at_tpr(s_in, s_out) == pytest.approx(_fpr95_by_definition(s_in, s_out))
    m = ood_metrics(s_in, s_out)
    assert set(m) == {"auroc", "fpr95", "aupr_in", "aupr_out"}


def test_perfect_and_inverted_scores():
    s_in, s_out = np.arange(100.0), np.arange(100.0) + 1000
    assert ood_metrics(s_in, s_out) == {"auroc": 1.0, "fpr95": 0.0, "aupr_in": 1.0, "aupr_out": 1.0}
    assert auroc(s_out, s_in) == 0.0
    assert fpr_at_tpr(s_out, s_in) == 1.0
    with pytest.raises(ValueError):
        auroc([], [1.0])
