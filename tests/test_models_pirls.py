"""The block products of the zone rate model's IRLS (:class:`pipelines.models.pirls.Blocks`)
equal those of the full design with explicit calendar and zone dummies, which the fit never
builds (issue 12: the sufficient statistics that keep `vigie fit` fast on a city)."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from pipelines.models.pirls import Blocks


def _design(seed: int = 1, n: int = 5000, nz: int = 13):
    rng = np.random.default_rng(seed)
    hour, dow, zi = rng.integers(0, 24, n), rng.integers(0, 7, n), rng.integers(0, nz, n)
    calendar = [np.ones(n), *[(hour == h) * 1.0 for h in range(1, 24)]]
    calendar += [(dow == d) * 1.0 for d in range(1, 7)]
    C = rng.normal(size=(n, 4))
    # continuous columns interleaved with the calendar ones, as the model's terms are
    D = np.column_stack([*calendar[:3], C[:, 0], *calendar[3:], *C[:, 1:].T])
    cat_cols = [j for j in range(D.shape[1]) if j not in (3, 31, 32, 33)]
    return rng, D, zi, nz, hour * 7 + dow, cat_cols


def test_blocks_products_equal_the_full_design_with_dummies():
    rng, D, zi, nz, cat, cat_cols = _design()
    X = Blocks.of(D, zi, nz, cat=cat, cat_columns=cat_cols)
    full = np.hstack([D, np.eye(nz)[zi]])
    w, r = rng.random(len(zi)), rng.normal(size=len(zi))
    beta = rng.normal(size=full.shape[1]) * 0.1
    np.testing.assert_allclose(X.D, D)
    np.testing.assert_allclose(X.xtwx(w), full.T @ (full * w[:, None]), rtol=1e-10, atol=1e-8)
    np.testing.assert_allclose(X.xtr(r), full.T @ r, rtol=1e-10, atol=1e-8)
    np.testing.assert_allclose(X.eta(beta), np.clip(full @ beta, -30, 30), rtol=1e-10)
    codes = rng.integers(0, 40, len(zi))
    per_cluster = sp.csr_matrix((r, (codes, np.arange(len(zi)))), shape=(40, len(zi))) @ full
    np.testing.assert_allclose(X.cluster_scores(r, codes, 40), per_cluster, rtol=1e-10, atol=1e-8)


def test_blocks_without_categories_keep_every_column_dense():
    rng, D, zi, nz, _, _ = _design(seed=2)
    X = Blocks.of(D, zi, nz)
    full = np.hstack([D, np.eye(nz)[zi]])
    w = rng.random(len(zi))
    assert X.C.shape == D.shape
    np.testing.assert_allclose(X.xtwx(w), full.T @ (full * w[:, None]), rtol=1e-10, atol=1e-8)


def test_block_information_solves_and_inverts_as_the_dense_matrix():
    """The Schur-complement solves of :class:`pipelines.models.pirls.Info` (what keeps a
    5 000-zone fit from factorising a 5 050-square matrix at every step) equal the dense
    matrix's solve, inverse rows and zone diagonal, and the sandwich its dense formula."""
    from pipelines.models.pirls import sandwich

    rng, D, zi, nz, cat, cat_cols = _design(seed=3)
    X = Blocks.of(D, zi, nz, cat=cat, cat_columns=cat_cols)
    p = X.p
    w, g = rng.random(len(zi)), rng.normal(size=p + nz)
    pen = np.r_[0.0, np.full(p - 1, 1e-3), np.full(nz, 2.0)]
    info = X.info(w, pen)
    H = X.xtwx(w) + np.diag(pen)
    np.testing.assert_allclose(info.dense(), H, rtol=1e-12, atol=1e-9)
    Hi = np.linalg.inv(H)
    np.testing.assert_allclose(info.solve(g), np.linalg.solve(H, g), rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(info.inverse_fixed_rows(), Hi[:p], rtol=1e-7, atol=1e-10)
    np.testing.assert_allclose(info.inverse_zone_diagonal(), np.diag(Hi)[p:], rtol=1e-7)
    y = rng.poisson(2.0, len(zi)).astype(float)
    mu = np.full(len(zi), 2.0)
    day = rng.integers(0, 30, len(zi))
    cov, G = sandwich(X, y, mu, 0.1, info, day)
    full = np.hstack([D, np.eye(nz)[zi]])
    r = (y - mu) / (1.0 + 0.1 * mu)
    S = sp.csr_matrix((r, (day, np.arange(len(zi)))), shape=(30, len(zi))) @ full
    ref = (Hi @ (S.T @ S) @ Hi)[:p, :p] * 30 / 29
    assert G == 30
    np.testing.assert_allclose(cov, ref, rtol=1e-7, atol=1e-12)
