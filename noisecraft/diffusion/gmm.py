"""Gaussian mixtures: data distributions whose ideal denoiser, score and noisy density are known in closed form.

For p(x0) = sum_k w_k N(mu_k, C_k), the noisy marginal x = x0 + sigma eps is p_sigma(x) = sum_k w_k N(x; mu_k, C_k +
sigma^2 I), and the minimum-MSE denoiser is (Bayes' rule per component, then total expectation)

    D(x, sigma) = E[x0 | x] = sum_k r_k(x) [mu_k + C_k (C_k + sigma^2 I)^-1 (x - mu_k)],
    r_k(x) = w_k N(x; mu_k, C_k + sigma^2 I) / p_sigma(x),

with the score grad log p_sigma(x) = (D(x, sigma) - x) / sigma^2 (Tweedie's formula; Karras et al. 2022, eq. 3).
This gives exact answers for testing samplers and networks. Each covariance is diagonalized once, C_k = U_k diag(l_k)
U_k^T, so C_k + sigma^2 I = U_k diag(l_k + sigma^2) U_k^T is inverted for any per-example sigma without refactoring;
the mixture is combined with log-sum-exp.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


class GaussianMixture:
    """sum_k weights[k] N(means[k], covs[k]) in D dimensions; `covs` is `[K, D, D]` (full) or `[K, D]` (diagonal).

    Parameters are stored in float64; methods compute in the dtype and device of their input `x` (float32 or
    float64), with `x` of shape `[B, D]` and `sigma` a float, a 0-d tensor or a `[B]` tensor.
    """

    def __init__(self, means: Tensor, covs: Tensor, weights: Tensor):
        means, covs, weights = (torch.as_tensor(v).detach() for v in (means, covs, weights))
        self.dtype = means.dtype if means.dtype in (torch.float32, torch.float64) else torch.float64
        means, covs, weights = (v.cpu().double() for v in (means, covs, weights))
        if means.ndim != 2:
            raise ValueError(f"means must have shape [K, D]; got {tuple(means.shape)}.")
        k, d = means.shape
        if covs.shape == (k, d):
            covs = torch.diag_embed(covs)
        if covs.shape != (k, d, d):
            raise ValueError(
                f"covs must have shape [K, D, D] = [{k}, {d}, {d}] or [K, D] (diagonal); got {tuple(covs.shape)}."
            )
        if not torch.allclose(covs, covs.transpose(1, 2), rtol=1e-6, atol=1e-10):
            raise ValueError("covs must be symmetric; symmetrize with (C + C.transpose(-1, -2)) / 2.")
        if weights.shape != (k,) or not bool(torch.isfinite(weights).all()) or bool((weights < 0).any()):
            raise ValueError(f"weights must be {k} non-negative finite numbers (one per component); got {weights}.")
        if not weights.sum() > 0:
            raise ValueError("weights must not all be zero.")
        eigvals, eigvecs = torch.linalg.eigh(covs)
        if not bool((eigvals > 0).all()):
            raise ValueError("every covariance must be positive definite; add a small multiple of the identity.")
        self.means, self.covs, self.weights = means, covs, weights / weights.sum()
        self._eigvals, self._eigvecs = eigvals, eigvecs  # C_k = U_k diag(l_k) U_k^T
        self._cache: dict = {}

    @property
    def num_components(self) -> int:
        return self.means.shape[0]

    @property
    def dim(self) -> int:
        return self.means.shape[1]

    @property
    def mean(self) -> Tensor:
        """Mixture mean sum_k w_k mu_k, shape `[D]`."""
        return (self.weights @ self.means).to(self.dtype)

    @property
    def covariance(self) -> Tensor:
        """Mixture covariance sum_k w_k (C_k + mu_k mu_k^T) - mean mean^T (law of total covariance), `[D, D]`."""
        outer_means = self.means[:, :, None] * self.means[:, None, :]
        second_moment = torch.einsum("k,kde->de", self.weights, self.covs + outer_means)
        mean = self.weights @ self.means
        return (second_moment - torch.outer(mean, mean)).to(self.dtype)

    def responsibilities(self, x: Tensor, sigma: float | Tensor = 0.0) -> Tensor:
        """r_k(x) = P(component k | x_sigma = x), shape `[B, K]`."""
        _, _, log_joint = self._component_terms(x, sigma)
        return log_joint.softmax(dim=-1)

    def log_prob(self, x: Tensor, sigma: float | Tensor = 0.0) -> Tensor:
        """log p_sigma(x), the density of x0 + sigma eps (sigma = 0: the mixture itself), shape `[B]`."""
        _, _, log_joint = self._component_terms(x, sigma)
        return log_joint.logsumexp(dim=-1)

    def denoiser(self, x: Tensor, sigma: float | Tensor) -> Tensor:
        """Exact posterior mean E[x0 | x0 + sigma eps = x], shape like x (the module docstring's formula)."""
        y, var, log_joint = self._component_terms(x, sigma)
        means, eigvals, eigvecs = self._params(x)
        # mu_k + C_k (C_k + sigma^2 I)^-1 (x - mu_k) = mu_k + U_k diag(l_k / (l_k + sigma^2)) U_k^T (x - mu_k)
        posterior_means = means + torch.einsum("kde,bke->bkd", eigvecs, eigvals / var * y)
        return torch.einsum("bk,bkd->bd", log_joint.softmax(dim=-1), posterior_means)

    def score(self, x: Tensor, sigma: float | Tensor) -> Tensor:
        """grad_x log p_sigma(x) = -sum_k r_k (C_k + sigma^2 I)^-1 (x - mu_k), shape like x."""
        y, var, log_joint = self._component_terms(x, sigma)
        _, _, eigvecs = self._params(x)
        component_scores = -torch.einsum("kde,bke->bkd", eigvecs, y / var)
        return torch.einsum("bk,bkd->bd", log_joint.softmax(dim=-1), component_scores)

    def sample(
        self, n: int, generator: torch.Generator | None = None, return_components: bool = False
    ) -> Tensor | tuple[Tensor, Tensor]:
        """n draws x0 ~ p (on the CPU, in the mixture's dtype); with `return_components` also their component index."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ValueError(f"n must be a non-negative integer; got {n!r}.")
        components = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        z = torch.randn(n, self.dim, generator=generator, dtype=torch.float64)
        # x0 = mu_k + U_k diag(sqrt(l_k)) z has covariance U_k diag(l_k) U_k^T = C_k.
        scaled_z = self._eigvals[components].sqrt() * z
        x0 = self.means[components] + torch.einsum("nde,ne->nd", self._eigvecs[components], scaled_z)
        x0 = x0.to(self.dtype)
        return (x0, components) if return_components else x0

    def _component_terms(self, x: Tensor, sigma: float | Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """y = U_k^T (x - mu_k) and var = l_k + sigma^2 (both `[B, K, D]`), and log w_k N(x; mu_k, C_k + sigma^2 I)."""
        means, eigvals, eigvecs = self._params(x)
        sigma = _batch_sigma(sigma, x)
        y = torch.einsum("kde,bkd->bke", eigvecs, x[:, None, :] - means)
        var = eigvals + sigma[:, None, None] ** 2
        log_normal = -0.5 * ((y**2 / var).sum(-1) + var.log().sum(-1) + self.dim * math.log(2 * math.pi))
        return y, var, self.weights.to(x).log() + log_normal

    def _params(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(means, eigenvalues, eigenvectors) in x's dtype and device, after checking x's shape."""
        if not isinstance(x, Tensor) or not x.is_floating_point() or x.ndim != 2 or x.shape[1] != self.dim:
            got = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(f"x must be a floating-point tensor of shape [B, {self.dim}]; got {got}.")
        key = (x.dtype, x.device)
        if key not in self._cache:
            tables = (self.means, self._eigvals, self._eigvecs)
            self._cache[key] = tuple(v.to(dtype=x.dtype, device=x.device) for v in tables)
        return self._cache[key]

    def __repr__(self) -> str:
        return f"GaussianMixture(num_components={self.num_components}, dim={self.dim}, dtype={self.dtype})"


def random_mixture(
    dim: int,
    n_components: int,
    generator: torch.Generator | None = None,
    separation: float = 4.0,
    dtype: torch.dtype = torch.float64,
) -> GaussianMixture:
    """A random mixture with full covariances whose means are at least `separation` standard deviations apart.

    Component standard deviations along their (random) principal axes lie in [0.5, 1]; weights lie in [0.5, 1.5]
    before normalization, so no component is negligible. Deterministic given `generator`.
    """
    if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
        raise ValueError(f"dim must be a positive integer; got {dim!r}.")
    if isinstance(n_components, bool) or not isinstance(n_components, int) or n_components < 1:
        raise ValueError(f"n_components must be a positive integer; got {n_components!r}.")
    if not separation > 0:
        raise ValueError(f"separation must be positive; got {separation!r}.")

    def uniform(*shape, low: float, high: float) -> Tensor:
        return low + (high - low) * torch.rand(*shape, generator=generator, dtype=torch.float64)

    rotations, _ = torch.linalg.qr(torch.randn(n_components, dim, dim, generator=generator, dtype=torch.float64))
    stds = uniform(n_components, dim, low=0.5, high=1.0)
    covs = rotations @ torch.diag_embed(stds**2) @ rotations.transpose(1, 2)
    # Rejection sampling of the means, widening the spread until they are `separation` max-stds apart.
    min_distance, spread = separation * float(stds.max()), separation
    while True:
        means = spread * torch.randn(n_components, dim, generator=generator, dtype=torch.float64)
        distances = torch.pdist(means)  # all pairs i < j
        if n_components == 1 or float(distances.min()) >= min_distance:
            break
        spread *= 1.1
    weights = uniform(n_components, low=0.5, high=1.5)
    return GaussianMixture(means.to(dtype), covs.to(dtype), weights.to(dtype))


def _batch_sigma(sigma: float | Tensor, x: Tensor) -> Tensor:
    """sigma as a `[B]` tensor in x's dtype and device."""
    sigma = torch.as_tensor(sigma, dtype=x.dtype, device=x.device)
    if sigma.ndim == 0 or sigma.shape == (1,):
        return sigma.reshape(1).expand(x.shape[0])
    if sigma.shape != (x.shape[0],):
        raise ValueError(f"sigma must be a float, a 0-d tensor or shape [{x.shape[0]}]; got {tuple(sigma.shape)}.")
    return sigma
