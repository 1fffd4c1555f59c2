"""OOD detection metrics as thin wrappers around scikit-learn.

Convention everywhere: a higher score means "more out-of-distribution". In-distribution samples are
the negatives for AUROC and AUPR-out, the positives for AUPR-in and for the TPR in FPR95.
"""
from __future__ import annotations

import numpy as np


def _split(scores_in: np.ndarray, scores_out: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    s_in = np.asarray(scores_in, dtype=np.float64).ravel()
    s_out = np.asarray(scores_out, dtype=np.float64).ravel()
    if len(s_in) == 0 or len(s_out) == 0:
        raise ValueError("need at least one in-distribution and one out-of-distribution score")
    y = np.r_[np.zeros(len(s_in)), np.ones(len(s_out))]  # 1 = OOD
    return y, np.r_[s_in, s_out]


def auroc(scores_in: np.ndarray, scores_out: np.ndarray) -> float:
    """Area under the ROC curve for telling OOD (positive) from in-distribution; 0.5 = chance."""
    y, s = _split(scores_in, scores_out)
    from sklearn.metrics import roc_auc_score  # lazy: keeps CLI start-up fast
    return float(roc_auc_score(y, s))


def fpr_at_tpr(scores_in: np.ndarray, scores_out: np.ndarray, tpr: float = 0.95) -> float:
    """FPR95: the fraction of OOD samples accepted as in-distribution at the strictest threshold that
    still accepts ``tpr`` of the in-distribution samples (Liang et al. 2018; lower is better)."""
    y, s = _split(scores_in, scores_out)
    # In-distribution is the positive class here, with -score as its score.
    from sklearn.metrics import roc_curve
    fpr, tpr_curve, _ = roc_curve(1 - y, -s, drop_intermediate=False)
    return float(fpr[np.searchsorted(tpr_curve, tpr, side="left")])


def aupr_in(scores_in: np.ndarray, scores_out: np.ndarray) -> float:
    """Average precision with in-distribution as the positive class (score -s)."""
    y, s = _split(scores_in, scores_out)
    from sklearn.metrics import average_precision_score
    return float(average_precision_score(1 - y, -s))


def aupr_out(scores_in: np.ndarray, scores_out: np.ndarray) -> float:
    """Average precision with OOD as the positive class (score s)."""
    y, s = _split(scores_in, scores_out)
    from sklearn.metrics import average_precision_score
    return float(average_precision_score(y, s))


def ood_metrics(scores_in: np.ndarray, scores_out: np.ndarray) -> dict[str, float]:
    """``auroc``, ``fpr95``, ``aupr_in``, ``aupr_out`` for one score, one ID set and one OOD set."""
    return {"auroc": auroc(scores_in, scores_out), "fpr95": fpr_at_tpr(scores_in, scores_out),
            "aupr_in": aupr_in(scores_in, scores_out), "aupr_out": aupr_out(scores_in, scores_out)}


__all__ = ["auroc", "fpr_at_tpr", "aupr_in", "aupr_out", "ood_metrics"]
