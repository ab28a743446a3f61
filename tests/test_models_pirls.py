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
