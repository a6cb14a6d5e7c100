"""Cheap transferability estimators: scores that try to predict, from representations and labels alone, how well a
source's representation will transfer to a target, without training a readout. Pure numpy, on matrices with one
row per image; `taskonomy_db.estimate` feeds them the workspace's representations and labels.

- `logme`: LogME (You et al., ICML 2021), the log of the maximum Bayesian evidence of a linear model from the
  features to each target dimension, maximised over the prior and noise precisions by the fixed-point iteration
  of the authors' later paper (arXiv 2110.10545, their code's default), averaged over target dimensions.
- `ridge_score`: the negative held-out mean squared error of ridge regression, cross-validated over groups
  (buildings), on z-scored features and targets.
- `debiased_cka`: linear CKA with the unbiased HSIC estimator of Song et al. (2012), between two
  representations of the same images, each z-scored per feature.
- `rsa`: representational similarity analysis: Spearman's correlation between the upper triangles of two
  representational dissimilarity matrices (1 - Pearson correlation between images).
"""

from __future__ import annotations

import numpy as np
from scipy import stats

EPSILON = 1e-5  # LogME's guard against a zero denominator, as published


def zscore(values: np.ndarray) -> np.ndarray:
    """Each column centred and scaled to unit variance (a constant column becomes zeros), in float64."""
    values = np.asarray(values, dtype=np.float64)
    centred = values - values.mean(axis=0)
    scale = centred.std(axis=0)
    return np.divide(centred, scale, out=np.zeros_like(centred), where=scale > 0)


def feature_svd(features: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """(U, singular values, number of features) of `features`: what LogME needs of them, reusable across
    targets."""
    f = np.asarray(features, dtype=np.float64)
    u, s, _ = np.linalg.svd(f, full_matrices=False)
    return u, s, f.shape[1]


def logme(
    features: np.ndarray | None,
    targets: np.ndarray,
    tol: float = 1e-3,
    max_iter: int = 11,
    svd: tuple[np.ndarray, np.ndarray, int] | None = None,
) -> float:
    """LogME of `features` (n x d; or their `feature_svd`) for the regression `targets` (n or n x k): the mean
    over target columns of the maximum log evidence per image. Each column's precisions (alpha of the prior on
    the weights, beta of the noise) start at 1 and follow the fixed-point updates until alpha/beta changes by
    less than `tol` relatively, or `max_iter` updates (the published 1e-3 and 11); the evidence is then taken at
    the final precisions."""
    u, s, d = svd if svd is not None else feature_svd(features)
    n = len(u)
    y = np.asarray(targets, dtype=np.float64).reshape(n, -1)
    sigma = s**2
    evidences = []
    for column in y.T:
        x2 = (u.T @ column) ** 2
        rest = float(column @ column - x2.sum())  # the part of y outside the features' span
        alpha, beta = 1.0, 1.0
        for _ in range(max_iter):
            t = alpha / beta
            gamma = float((sigma / (sigma + t)).sum())
            m2 = float((sigma * x2 / (t + sigma) ** 2).sum())
            res2 = float((x2 / (1 + sigma / t) ** 2).sum()) + rest
            alpha = gamma / (m2 + EPSILON)
            beta = (n - gamma) / (res2 + EPSILON)
            if abs(alpha / beta - t) / t <= tol:
                break
        t = alpha / beta
        m2 = float((sigma * x2 / (t + sigma) ** 2).sum())
        res2 = float((x2 / (1 + sigma / t) ** 2).sum()) + rest
        # sigma has min(n, d) values; the d - rank directions with no data contribute log(alpha) each
        log_det = float(np.log(alpha + beta * sigma).sum()) + (d - len(sigma)) * np.log(alpha)
        evidence = (
            d / 2 * np.log(alpha)
            + n / 2 * np.log(beta)
            - log_det / 2
            - beta / 2 * res2
            - alpha / 2 * m2
            - n / 2 * np.log(2 * np.pi)
        )
        evidences.append(evidence / n)
    return float(np.mean(evidences))


class RidgeFolds:
    """Ridge regression from one representation, each group (building) held out in turn: the features' side of
    every fold solved once, so that scoring another target is a matrix product per fold. Features z-scored with
    the training rows' statistics; `penalty` times the number of training rows as the ridge, so its weight does
    not shrink as images are added."""

    def __init__(self, features: np.ndarray, groups: np.ndarray, penalty: float = 1.0) -> None:
        x = np.asarray(features, dtype=np.float64)
        self.groups = np.asarray(groups)
        names = np.unique(self.groups)
        if len(names) < 2:
            raise ValueError("ridge_score needs images of at least two groups (buildings) to hold one out")
        self.folds = []
        for name in names:
            held = self.groups == name
            train = x[~held]
            mean, std = train.mean(0), train.std(0)
            std[std == 0] = 1.0
            a = (train - mean) / std
            # held-out predictions = ((x_held - mean) / std) @ W, W = (A'A + p I)^-1 A' b: the matrix in front of
            # b, from the smaller of the two normal equations (features x features, or images x images)
            n, d = a.shape
            if d <= n:
                hat = np.linalg.solve(a.T @ a + penalty * n * np.eye(d), a.T)
            else:
                hat = a.T @ np.linalg.solve(a @ a.T + penalty * n * np.eye(n), np.eye(n))
            self.folds.append((held, ((x[held] - mean) / std) @ hat))

    def score(self, targets: np.ndarray) -> float:
        """Minus the mean squared error over every held-out row and target column (targets z-scored with each
        fold's training rows' statistics)."""
        y = np.asarray(targets, dtype=np.float64).reshape(len(self.groups), -1)
        squared, count = 0.0, 0
        for held, predictor in self.folds:
            train = y[~held]
            mean, std = train.mean(0), train.std(0)
            std[std == 0] = 1.0
            predicted = predictor @ ((train - mean) / std)
            squared += float((((y[held] - mean) / std - predicted) ** 2).sum())
            count += int(held.sum()) * y.shape[1]
        return -squared / count


def ridge_score(features: np.ndarray, targets: np.ndarray, groups: np.ndarray, penalty: float = 1.0) -> float:
    """Minus the mean squared error of ridge regression on held-out groups (see RidgeFolds); needs at least two
    groups."""
    return RidgeFolds(features, groups, penalty).score(targets)


def debiased_hsic(k: np.ndarray, l: np.ndarray) -> float:  # noqa: E741 - the paper's names
    """The unbiased HSIC estimator of Song et al. (2012) for two n x n kernel matrices (n >= 4):
    [tr(K~ L~) + 1'K~1 1'L~1 / ((n-1)(n-2)) - 2/(n-2) 1'K~L~1] / (n(n-3)), K~ and L~ with zero diagonals."""
    n = len(k)
    if n < 4:
        raise ValueError("the unbiased HSIC needs at least 4 images")
    k = np.array(k, dtype=np.float64)
    l = np.array(l, dtype=np.float64)  # noqa: E741
    np.fill_diagonal(k, 0.0)
    np.fill_diagonal(l, 0.0)
    k_sums, l_sums = k.sum(1), l.sum(1)
    trace = float((k * l).sum())  # tr(K~ L~), both symmetric
    return (trace + k_sums.sum() * l_sums.sum() / ((n - 1) * (n - 2)) - 2.0 / (n - 2) * float(k_sums @ l_sums)) / (
        n * (n - 3)
    )


def linear_kernel(values: np.ndarray) -> tuple[np.ndarray, float]:
    """(K = Z Z' of the per-feature z-scored `values`, HSIC(K, K)): one representation's side of CKA."""
    z = zscore(values)
    k = z @ z.T
    return k, debiased_hsic(k, k)


def debiased_cka(
    x: np.ndarray | None,
    y: np.ndarray | None,
    kernels: tuple[tuple[np.ndarray, float], tuple[np.ndarray, float]] | None = None,
) -> float:
    """Linear CKA of two representations of the same n images (n x d1, n x d2; or their `linear_kernel`s), each
    z-scored per feature, with the unbiased HSIC: HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L)), K = X X', L = Y Y'."""
    (k, kk), (l, ll) = kernels if kernels is not None else (linear_kernel(x), linear_kernel(y))  # noqa: E741
    denominator = np.sqrt(max(kk, 0.0) * max(ll, 0.0))
    return float(debiased_hsic(k, l) / denominator) if denominator > 0 else 0.0


def dissimilarities(values: np.ndarray) -> np.ndarray:
    """The representational dissimilarity matrix's upper triangle: 1 - Pearson correlation of each pair of
    rows (images), in row-major order of the pairs i < j."""
    values = np.asarray(values, dtype=np.float64)
    rows = np.corrcoef(values)
    rows = np.nan_to_num(rows, nan=0.0)  # a constant image correlates with nothing
    upper = np.triu_indices(len(values), k=1)
    return 1.0 - rows[upper]


def rsa(x: np.ndarray | None, y: np.ndarray | None, ranked: tuple[np.ndarray, np.ndarray] | None = None) -> float:
    """Spearman's correlation between the dissimilarity matrices of two representations of the same images (or
    between their `ranked_dissimilarities`)."""
    rx, ry = ranked if ranked is not None else (ranked_dissimilarities(x), ranked_dissimilarities(y))
    correlation = np.corrcoef(rx, ry)[0, 1] if rx.std() > 0 and ry.std() > 0 else np.nan
    return float(correlation) if np.isfinite(correlation) else 0.0


def ranked_dissimilarities(values: np.ndarray) -> np.ndarray:
    """The dissimilarities' ranks (ties averaged): Spearman's correlation is Pearson's of these."""
    return stats.rankdata(dissimilarities(values))
