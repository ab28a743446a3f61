"""Penalised IRLS for NB2 log-linear models with many zone intercepts (the numerics of
:mod:`pipelines.models.zone_glm`).

The design is kept in blocks (:class:`Blocks`): the fixed terms that are functions of a row's
hour of day x day of week (a 168-row table), the other dense columns ``C``, and each row's zone:
neither the zone dummies nor the calendar dummies are built, and ``X'WX`` is assembled from sums
of the weights (and of ``w C``) per zone x hour of week plus one dense ``C'WC`` (the products of
the full design, exactly, at a fraction of their cost: about 5x fewer operations on a 300-zone
hourly city). :func:`fit_pql` alternates penalised
IRLS for the coefficients with the updates of the zone-effect variance (penalised
quasi-likelihood, Breslow & Clayton 1993, by Schall's 1991 update) and of the NB2 dispersion (maximum likelihood at the
fitted means, Lawless 1987) until both settle; it starts from given values (a previous fit: a
warm start).

References
----------
Breslow, N. E. & Clayton, D. G. (1993). Approximate inference in generalized linear mixed
models. *JASA* 88(421), 9-25.
Schall, R. (1991). Estimation in generalized linear models with random effects. *Biometrika*
78(4), 719-727.
Lawless, J. F. (1987). Negative binomial and mixed Poisson regression. *Canadian Journal of
Statistics* 15(3), 209-225.
Liang, K.-Y. & Zeger, S. L. (1986). Longitudinal data analysis using generalized linear models.
*Biometrika* 73(1), 13-22.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp

from pipelines.models.glm import _nb_alpha_mle

#: a whisper of ridge on the fixed terms (not the intercept), for stability
RIDGE = 1e-3
#: outer rounds of (IRLS, zone variance, NB2 dispersion)
ROUNDS = 4


@dataclass(frozen=True)
class Info:
    """The penalised information ``H = X'WX + P`` in blocks: the fixed terms' ``A``
    (``p x p``), their products with the zones ``B`` (``p x nz``) and the zones' diagonal ``d``
    (``Z'WZ`` is diagonal: a row has one zone).

    Solves and the parts of ``H^-1`` the fit needs go through the Schur complement of the
    zone block, ``S = A - B diag(d)^-1 B'`` (``p x p``): ``O(nz p^2)`` operations instead of the
    ``O((p + nz)^3)`` of the dense matrix (a region's 5 000 zones: a 5 050-square matrix of
    200 MB factorised at every IRLS step otherwise). A singular ``S`` (a column without
    weight) is pseudo-inverted (the same solution as ``lstsq`` on the dense matrix; where an
    unpenalised intercept were collinear with the zones, a valid solution but not ``lstsq``'s
    minimum-norm one: :func:`fit_pql` penalises both, so ``S`` is positive definite there).
    """

    A: np.ndarray
    B: np.ndarray
    d: np.ndarray

    @property
    def p(self) -> int:
        return self.A.shape[0]

    def dense(self) -> np.ndarray:
        """``H`` as one matrix (for checks)."""
        p = self.p
        H = np.zeros((p + len(self.d), p + len(self.d)))
        H[:p, :p] = self.A
        H[:p, p:] = self.B
        H[p:, :p] = self.B.T
        H[p:, p:] = np.diag(self.d)
        return H

    def _schur(self) -> tuple[np.ndarray, np.ndarray]:
        """``pinv(S)`` and ``E = B diag(d)^-1``."""
        E = self.B / self.d
        return np.linalg.pinv(self.A - E @ self.B.T, hermitian=True), E

    def solve(self, g: np.ndarray) -> np.ndarray:
        """``H^-1 g`` by block elimination of the zones."""
        Si, E = self._schur()
        p = self.p
        x1 = Si @ (g[:p] - E @ g[p:])
        return np.r_[x1, (g[p:] - self.B.T @ x1) / self.d]

    def inverse_fixed_rows(self) -> np.ndarray:
        """The fixed terms' rows of ``H^-1`` (``p x (p + nz)``): ``[S^-1, -S^-1 E]``."""
        Si, E = self._schur()
        return np.hstack([Si, -Si @ E])

    def inverse_zone_diagonal(self) -> np.ndarray:
        """The zones' diagonal of ``H^-1``: ``1/d + diag(E' S^-1 E)``."""
        Si, E = self._schur()
        return 1.0 / self.d + np.einsum("ij,ij->j", E, Si @ E)


@dataclass(frozen=True)
class Blocks:
    """The training design in blocks: the fixed terms that are functions of a row's category
    ``cat`` (intercept, hour of day, day of week: a ``K x q`` table ``Dcat``), the other dense
    columns ``C`` (``n x m``), and each row's zone ``zi`` (the zone dummies, never built).

    Every product the IRLS needs is assembled from sums over the ``zone x category`` groups
    (``np.bincount``) and one ``C'WC``: exactly the products of the full design
    ``D = [Dcat[cat] | C]`` with the zone dummies, at a fraction of their cost (sufficient
    statistics of the categorical terms). ``qi`` and ``ci`` are the positions of the two kinds
    of columns among the fixed terms.
    """

    C: np.ndarray
    Dcat: np.ndarray
    cat: np.ndarray
    qi: np.ndarray
    ci: np.ndarray
    zi: np.ndarray
    nz: int
    gz: np.ndarray  # each row's zone x category group, ``zi * K + cat``

    @classmethod
    def of(
        cls,
        D: np.ndarray,
        zi: np.ndarray,
        nz: int,
        *,
        cat: np.ndarray | None = None,
        cat_columns: Sequence[int] = (),
    ) -> Blocks:
        """Blocks of the dense fixed terms ``D`` (``n x p``): the columns ``cat_columns`` must be
        functions of ``cat`` (the row's category code, ``0..K-1``); the others stay dense."""
        n, p = D.shape
        qi = np.asarray(sorted(cat_columns) if cat is not None else [], dtype=np.int64)
        ci = np.setdiff1d(np.arange(p), qi)
        codes = np.zeros(n, np.int64) if cat is None else np.asarray(cat, np.int64)
        K = int(codes.max()) + 1 if n else 1
        first = np.full(K, -1, np.int64)
        first[codes[::-1]] = np.arange(n - 1, -1, -1)
        Dcat = np.zeros((K, len(qi)))
        seen = first >= 0
        Dcat[seen] = D[first[seen]][:, qi]
        zi = np.asarray(zi, np.int64)
        return cls(
            C=np.asfortranarray(D[:, ci]), Dcat=Dcat, cat=codes, qi=qi, ci=ci, zi=zi,
            nz=int(nz), gz=zi * K + codes,
        )  # fmt: skip

    @property
    def p(self) -> int:
        return len(self.qi) + len(self.ci)

    @property
    def K(self) -> int:
        return self.Dcat.shape[0]

    @property
    def D(self) -> np.ndarray:
        """The dense fixed terms, rebuilt (``n x p``; for checks, not for the IRLS)."""
        D = np.empty((len(self.zi), self.p))
        D[:, self.qi] = self.Dcat[self.cat]
        D[:, self.ci] = self.C
        return D

    def _group_sums(self, v: np.ndarray, gz: np.ndarray) -> np.ndarray:
        """Sums of ``v`` per zone x category (``nz x K``)."""
        return np.bincount(gz, v, minlength=self.nz * self.K).reshape(self.nz, self.K)

    def eta(self, beta: np.ndarray) -> np.ndarray:
        p = self.p
        table = (self.Dcat @ beta[self.qi])[None, :] + beta[p:][:, None]  # zone x category
        return np.clip(table.ravel()[self.gz] + self.C @ beta[self.ci], -30, 30)

    def xtr(self, r: np.ndarray) -> np.ndarray:
        """``X'r``."""
        s = self._group_sums(r, self.gz)
        out = np.empty(self.p + self.nz)
        out[self.qi] = self.Dcat.T @ s.sum(axis=0)
        out[self.ci] = self.C.T @ r
        out[self.p :] = s.sum(axis=1)
        return out

    def info(self, w: np.ndarray, pen: np.ndarray | None = None) -> Info:
        """``X'WX + diag(pen)`` in blocks (:class:`Info`): the categorical terms' and the
        zones' products from the sums of ``w`` (and of ``w C``) per zone x category, ``C'WC``
        dense, ``Z'WZ`` diagonal."""
        gz, p, qi, ci = self.gz, self.p, self.qi, self.ci
        sw = self._group_sums(w, gz)
        Cw = np.asfortranarray(self.C * w[:, None])  # columns contiguous for the sums
        T = np.stack([self._group_sums(Cw[:, j], gz) for j in range(len(ci))], axis=-1)
        A = np.zeros((p, p))
        A[np.ix_(qi, qi)] = self.Dcat.T @ (sw.sum(axis=0)[:, None] * self.Dcat)
        A[np.ix_(qi, ci)] = self.Dcat.T @ T.sum(axis=0)
        A[np.ix_(ci, qi)] = A[np.ix_(qi, ci)].T
        A[np.ix_(ci, ci)] = self.C.T @ Cw
        B = np.zeros((p, self.nz))
        B[qi] = (sw @ self.Dcat).T
        B[ci] = T.sum(axis=1).T
        d = sw.sum(axis=1)
        if pen is not None:
            A[np.diag_indices(p)] += pen[:p]
            d = d + pen[p:]
        return Info(A=A, B=B, d=d)

    def xtwx(self, w: np.ndarray) -> np.ndarray:
        """``X'WX``, dense (``(p + nz)^2``: for checks; the IRLS keeps :meth:`info`)."""
        return self.info(w).dense()

    def cluster_scores(self, r: np.ndarray, codes: np.ndarray, G: int) -> np.ndarray:
        """``S[g] = sum over rows of cluster g of r x_i`` (``G x (p + nz)``)."""
        S = np.empty((G, self.p + self.nz))
        Rk = sp.csr_matrix((r, (codes, self.cat)), shape=(G, self.K))
        S[:, self.qi] = Rk @ self.Dcat
        for k, j in enumerate(self.ci):
            S[:, j] = np.bincount(codes, r * self.C[:, k], minlength=G)
        S[:, self.p :] = sp.csr_matrix((r, (codes, self.zi)), shape=(G, self.nz)).toarray()
        return S


def _pll(X: Blocks, y: np.ndarray, beta: np.ndarray, pen: np.ndarray, alpha: float):
    """The penalised NB2 (Poisson when ``alpha`` is 0) log-likelihood, up to a constant."""
    eta = X.eta(beta)
    mu = np.exp(eta)
    if alpha > 0:
        ll = y * eta - (y + 1 / alpha) * np.log1p(alpha * mu)
    else:
        ll = y * eta - mu
    return float(ll.sum() - 0.5 * (pen * beta * beta).sum())


def _irls(
    X: Blocks, y: np.ndarray, pen: np.ndarray, alpha: float, beta: np.ndarray, iters: int
) -> tuple[np.ndarray, np.ndarray, Info]:
    """Penalised IRLS (Fisher scoring with step halving) for the NB2 log-linear model:
    estimates, means and the penalised information ``X'WX + P`` (:class:`Info`)."""
    cur = _pll(X, y, beta, pen, alpha)
    H, at = None, beta
    for _ in range(iters):
        mu = np.exp(X.eta(beta))
        w = mu / (1.0 + alpha * mu)
        H, at = X.info(w, pen), beta
        grad = X.xtr((y - mu) / (1.0 + alpha * mu)) - pen * beta
        step = H.solve(grad)
        t = 1.0
        while t > 1e-4:
            new = beta + t * step
            val = _pll(X, y, new, pen, alpha)
            if val >= cur - 1e-9 * abs(cur):
                break
            t /= 2
        done = np.max(np.abs(new - beta)) < 1e-6 or abs(val - cur) < 1e-10 * (1 + abs(cur))
        beta, cur = new, val
        if done:
            break
    mu = np.exp(X.eta(beta))
    if H is None or np.max(np.abs(beta - at)) > 1e-6:  # else the last step's H is kept
        H = X.info(mu / (1.0 + alpha * mu), pen)
    return beta, mu, H


def sandwich(X: Blocks, y, mu, alpha, H: Info, cluster) -> tuple[np.ndarray, int]:
    """The fixed terms' cluster-robust covariance ``[H^-1 B H^-1]_fixed`` (factor
    G / (G - 1); ``p x p``) and G."""
    codes, _ = pd.factorize(cluster)
    G = int(codes.max()) + 1
    R = H.inverse_fixed_rows()
    if G <= 1:
        return R[:, : H.p], 0
    r = (y - mu) / (1.0 + alpha * mu)
    Q = X.cluster_scores(r, codes.astype(np.int64), G) @ R.T  # G x p
    return Q.T @ Q * G / (G - 1), G


@dataclass(frozen=True)
class PQLFit:
    """What :func:`fit_pql` found: coefficients (fixed terms, then zones), means, the
    penalised information, the zone variance and the NB2 dispersion."""

    beta: np.ndarray
    mu: np.ndarray
    H: Info
    sigma2: float
    alpha: float


def fit_pql(X: Blocks, y: np.ndarray, *, beta: np.ndarray, rounds: int = ROUNDS) -> PQLFit:
    """``rounds`` rounds of penalised IRLS for the coefficients, each followed by the updates
    of the zone variance (``(u'u + tr V_uu) / Z``, the EM form of PQL) and of the NB2
    dispersion (module docstring). The first round is Poisson with a zone variance of 0.5;
    ``beta`` only starts the first IRLS (a warm start from a previous fit saves iterations,
    not changes the estimates: each IRLS runs to convergence).

    References
    ----------
    Breslow & Clayton (1993); Lawless (1987).
    """
    p, nz = X.p, X.nz
    sigma2, alpha = 0.5, 0.0
    for r in range(rounds):
        pen = np.r_[0.0, np.full(p - 1, RIDGE), np.full(nz, 1.0 / sigma2)]
        beta, mu, H = _irls(X, y, pen, alpha, beta, iters=25 if r == 0 else 10)
        u = beta[p:]
        Vuu = H.inverse_zone_diagonal()
        sigma2 = max(float((u @ u + Vuu.sum()) / nz), 1e-4)
        alpha = _nb_alpha_mle(y, mu)
    return PQLFit(beta=beta, mu=mu, H=H, sigma2=sigma2, alpha=float(alpha))
