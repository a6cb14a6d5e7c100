"""Each estimator equals a direct numpy implementation of its published formula on synthetic data: LogME against
the ICML 2021 formulation (the d x d eigendecomposition of F'F, the posterior mean m explicit) iterated to the
same fixed point; the unbiased HSIC against its U-statistic summed over every tuple of distinct images; ridge
against a least-squares solve of the augmented system; RSA against ranks computed by hand."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from taskonomy_db.estimators import debiased_cka, debiased_hsic, dissimilarities, logme, ridge_score, rsa, zscore


def icml_logme(f: np.ndarray, y: np.ndarray, iterations: int = 2000) -> float:
    """LogME as the ICML paper writes it: A = alpha I + beta F'F over all d dimensions, m = beta A^-1 F'y,
    gamma = sum beta s / (alpha + beta s), alpha = gamma / m'm, beta = (n - gamma) / |y - Fm|^2."""
    n, d = f.shape
    s, v = np.linalg.eigh(f.T @ f)
    s = np.clip(s, 0, None)
    scores = []
    for column in y.T:
        alpha, beta = 1.0, 1.0
        projected = v.T @ (f.T @ column)
        for _ in range(iterations):
            m = v @ (beta * projected / (alpha + beta * s))
            gamma = float((beta * s / (alpha + beta * s)).sum())
            alpha = gamma / (m @ m + 1e-5)
            beta = (n - gamma) / (((column - f @ m) ** 2).sum() + 1e-5)
        m = v @ (beta * projected / (alpha + beta * s))
        residual = ((column - f @ m) ** 2).sum()
        evidence = (
            d / 2 * np.log(alpha) + n / 2 * np.log(beta) - 0.5 * np.log(alpha + beta * s).sum()
            - beta / 2 * residual - alpha / 2 * (m @ m) - n / 2 * np.log(2 * np.pi)
        )  # fmt: skip
        scores.append(evidence / n)
    return float(np.mean(scores))


@pytest.mark.parametrize(("n", "d"), [(60, 12), (30, 50)])  # more images than features, and fewer
def test_logme_equals_the_icml_formula(n, d):
    rng = np.random.default_rng(n + d)
    f = rng.normal(size=(n, d))
    y = f[:, :3] @ rng.normal(size=(3, 2)) + 0.5 * rng.normal(size=(n, 2))
    assert logme(f, y, tol=1e-14, max_iter=2000) == pytest.approx(icml_logme(f, y), abs=1e-6)
    # the published stopping rule lands close to the fixed point; of two targets of one scale, the one the
    # features explain scores higher
    assert logme(f, y) == pytest.approx(icml_logme(f, y), abs=1e-2)
    assert logme(f, zscore(y)) > logme(f, zscore(rng.normal(size=(n, 2))))


def u_statistic_hsic(k: np.ndarray, l: np.ndarray) -> float:  # noqa: E741
    """HSIC = E[k_ij l_ij] + E[k_ij] E[l_qr] - 2 E[k_ij l_iq], each expectation over distinct indices."""
    n = len(k)
    pairs = list(itertools.permutations(range(n), 2))
    first = np.mean([k[i, j] * l[i, j] for i, j in pairs])
    second = np.mean([k[i, j] * l[q, r] for i, j, q, r in itertools.permutations(range(n), 4)])
    third = np.mean([k[i, j] * l[i, q] for i, j, q in itertools.permutations(range(n), 3)])
    return float(first + second - 2 * third)


def test_the_unbiased_hsic_equals_its_u_statistic():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(7, 3)), rng.normal(size=(7, 4))
    x[:, 0] += y[:, 1]  # some dependence
    k, l = x @ x.T, y @ y.T  # noqa: E741
    assert debiased_hsic(k, l) == pytest.approx(u_statistic_hsic(k, l), abs=1e-9)
    cka = u_statistic_hsic(*[zscore(v) @ zscore(v).T for v in (x, y)]) / np.sqrt(
        u_statistic_hsic(zscore(x) @ zscore(x).T, zscore(x) @ zscore(x).T)
        * u_statistic_hsic(zscore(y) @ zscore(y).T, zscore(y) @ zscore(y).T)
    )
    assert debiased_cka(x, y) == pytest.approx(cka, abs=1e-9)
    assert debiased_cka(x, x) == pytest.approx(1.0)


def test_ridge_equals_the_augmented_least_squares_solve_on_held_out_buildings():
    rng = np.random.default_rng(2)
    for n, d in ((40, 6), (24, 40)):  # the primal and the dual solve
        x = rng.normal(size=(n, d))
        y = x[:, :2] @ rng.normal(size=(2, 3)) + rng.normal(size=(n, 3))
        groups = np.repeat(np.arange(4), n // 4)
        squared = []
        for g in range(4):
            held = groups == g
            a, b = x[~held], y[~held]
            a_std, b_std = np.where(a.std(0) > 0, a.std(0), 1), np.where(b.std(0) > 0, b.std(0), 1)
            az, bz = (a - a.mean(0)) / a_std, (b - b.mean(0)) / b_std
            penalty = 0.5 * len(a)
            augmented = np.vstack([az, np.sqrt(penalty) * np.eye(d)])
            weights = np.linalg.lstsq(augmented, np.vstack([bz, np.zeros((d, 3))]), rcond=None)[0]
            predicted = ((x[held] - a.mean(0)) / a_std) @ weights
            squared.append(((((y[held] - b.mean(0)) / b_std) - predicted) ** 2).ravel())
        assert ridge_score(x, y, groups, penalty=0.5) == pytest.approx(-np.concatenate(squared).mean(), abs=1e-9)
    with pytest.raises(ValueError, match="at least two groups"):
        ridge_score(x, y, np.zeros(len(x)))


def test_rsa_is_the_rank_correlation_of_the_dissimilarities():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(9, 5))
    y = x @ rng.normal(size=(5, 4)) + 0.3 * rng.normal(size=(9, 4))
    dx = 1 - np.array([[np.corrcoef(x[i], x[j])[0, 1] for j in range(9)] for i in range(9)])
    upper = np.triu_indices(9, 1)
    assert dissimilarities(x) == pytest.approx(dx[upper], abs=1e-12)
    dy = dissimilarities(y)
    ranks = [np.argsort(np.argsort(v)) for v in (dx[upper], dy)]  # continuous: no ties
    assert rsa(x, y) == pytest.approx(np.corrcoef(*ranks)[0, 1], abs=1e-12)
    assert rsa(x, x) == pytest.approx(1.0)
