"""Penalised IRLS for NB2 log-linear models with many zone intercepts (the numerics of
:mod:`pipelines.models.zone_glm`).

The design is kept in two blocks, the dense fixed terms ``D`` and each row's zone: the zone
dummies are never built, ``X'WX`` is assembled block by block (``D'WD`` by a symmetric rank-k
product, ``D'WZ`` by zone sums, ``Z'WZ`` diagonal). :func:`fit_pql` alternates penalised
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
class Blocks:
    """The training design in two blocks: the dense fixed terms ``D`` and each row's zone
    ``zi`` (the zone dummies, never built); ``Zt`` sums rows per zone."""

    D: np.ndarray
    zi: np.ndarray
    nz: int
    Zt: sp.csr_matrix

    @classmethod
    def of(cls, D: np.ndarray, zi: np.ndarray, nz: int) -> Blocks:
        n = len(zi)
        Zt = sp.csr_matrix((np.ones(n), (zi, np.arange(n))), shape=(nz, n))
        return cls(D=np.ascontiguousarray(D), zi=zi, nz=nz, Zt=Zt)

    @property
    def p(self) -> int:
        return self.D.shape[1]

    def eta(self, beta: np.ndarray) -> np.ndarray:
        return np.clip(self.D @ beta[: self.p] + beta[self.p :][self.zi], -30, 30)

    def xtr(self, r: np.ndarray) -> np.ndarray:
        """``X'r``."""
        return np.r_[self.D.T @ r, np.bincount(self.zi, r, minlength=self.nz)]

    def xtwx(self, w: np.ndarray) -> np.ndarray:
        """``X'WX`` block by block: ``D'WD``, ``D'WZ`` (zone sums) and the diagonal ``Z'WZ``."""
        SD = self.D * np.sqrt(w)[:, None]
        p = self.p
        H = np.zeros((p + self.nz, p + self.nz))
        H[:p, :p] = SD.T @ SD  # numpy takes the symmetric rank-k product for A'A
        H[p:, :p] = self.Zt @ (self.D * w[:, None])
        H[:p, p:] = H[p:, :p].T
        H[p:, p:] = np.diag(np.bincount(self.zi, w, minlength=self.nz))
        return H


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
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Penalised IRLS (Fisher scoring with step halving) for the NB2 log-linear model:
    estimates, means and the penalised information ``X'WX + P``."""
    P = np.diag(pen)
    cur = _pll(X, y, beta, pen, alpha)
    H, at = None, beta
    for _ in range(iters):
        mu = np.exp(X.eta(beta))
        w = mu / (1.0 + alpha * mu)
        H, at = X.xtwx(w) + P, beta
        grad = X.xtr((y - mu) / (1.0 + alpha * mu)) - pen * beta
        step = np.linalg.lstsq(H, grad, rcond=None)[0]
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
        H = X.xtwx(mu / (1.0 + alpha * mu)) + P
    return beta, mu, H


def sandwich(X: Blocks, y, mu, alpha, H, cluster) -> tuple[np.ndarray, int]:
    """Cluster-robust covariance ``H^-1 B H^-1`` (factor G / (G - 1)) and G."""
    codes, _ = pd.factorize(cluster)
    G = int(codes.max()) + 1
    r = (y - mu) / (1.0 + alpha * mu)
    C = sp.csr_matrix((r, (codes, np.arange(len(y)))), shape=(G, len(y)))
    Sz = sp.csr_matrix((r, (codes, X.zi)), shape=(G, X.nz)).toarray()
    S = np.hstack([C @ X.D, Sz])
    Hi = np.linalg.pinv(H)
    if G <= 1:
        return Hi, 0
    return Hi @ (S.T @ S * G / (G - 1)) @ Hi, G


@dataclass(frozen=True)
class PQLFit:
    """What :func:`fit_pql` found: coefficients (fixed terms, then zones), means, the
    penalised information, the zone variance and the NB2 dispersion."""

    beta: np.ndarray
    mu: np.ndarray
    H: np.ndarray
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
        Vuu = np.diag(np.linalg.pinv(H))[p:]
        sigma2 = max(float((u @ u + Vuu.sum()) / nz), 1e-4)
        alpha = _nb_alpha_mle(y, mu)
    return PQLFit(beta=beta, mu=mu, H=H, sigma2=sigma2, alpha=float(alpha))
