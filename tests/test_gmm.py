"""Closed-form Gaussian-mixture denoiser (gmm.py) against brute force."""

import math

import pytest
import torch
from torch.distributions import Categorical, MixtureSameFamily, MultivariateNormal

from noisecraft.diffusion.gmm import GaussianMixture, random_mixture




def _mixture_1d() -> GaussianMixture:
    return GaussianMixture(
        means=torch.tensor([[-2.0], [0.5], [3.0]], dtype=torch.float64),
        covs=torch.tensor([[0.3], [0.05], [1.0]], dtype=torch.float64),  # diagonal form
        weights=torch.tensor([0.2, 0.5, 0.3], dtype=torch.float64),
    )


def _torch_mixture(gmm: GaussianMixture, sigma: float) -> MixtureSameFamily:
    noisy_covs = gmm.covs + sigma**2 * torch.eye(gmm.dim, dtype=torch.float64)
    components = MultivariateNormal(gmm.means, covariance_matrix=noisy_covs)
    return MixtureSameFamily(Categorical(probs=gmm.weights), components)


@pytest.mark.parametrize("sigma", [0.05, 0.7, 4.0])
def test_denoiser_equals_numerical_posterior_mean_1d(sigma):
    gmm = _mixture_1d()
    x = torch.linspace(-5, 6, 23, dtype=torch.float64)[:, None]
    # E[x0 | x] = int x0 p(x0) N(x; x0, sigma^2) dx0 / int p(x0) N(x; x0, sigma^2) dx0 on a fine grid
    grid = torch.linspace(-12, 14, 40_001, dtype=torch.float64)
    prior = gmm.log_prob(grid[:, None]).exp()
    likelihood = torch.exp(-0.5 * ((x - grid) / sigma) ** 2)  # [23, grid]
    posterior_mean = torch.trapezoid(prior * likelihood * grid, grid) / torch.trapezoid(prior * likelihood, grid)
    torch.testing.assert_close(gmm.denoiser(x, sigma)[:, 0], posterior_mean, rtol=1e-6, atol=1e-6)


def test_log_prob_matches_torch_distributions():
    gmm = random_mixture(3, 4, torch.Generator().manual_seed(0))
    x = gmm.sample(50, torch.Generator().manual_seed(1)) + torch.randn(50, 3, dtype=torch.float64)
    for sigma in (0.0, 0.3, 2.0):
        torch.testing.assert_close(gmm.log_prob(x, sigma), _torch_mixture(gmm, sigma).log_prob(x))


@pytest.mark.parametrize("sigma", [0.1, 1.0, 10.0])
def test_score_is_autograd_of_log_prob_and_tweedie(sigma):
    gmm = random_mixture(3, 3, torch.Generator().manual_seed(2))
    x = gmm.sample(40, torch.Generator().manual_seed(3)) + sigma * torch.randn(40, 3, dtype=torch.float64)
    x.requires_grad_()
    (autograd_score,) = torch.autograd.grad(gmm.log_prob(x, sigma).sum(), x)
    x = x.detach()
    torch.testing.assert_close(gmm.score(x, sigma), autograd_score)
    # Tweedie: grad log p_sigma(x) = (E[x0 | x] - x) / sigma^2
    torch.testing.assert_close((gmm.denoiser(x, sigma) - x) / sigma**2, autograd_score)


def test_per_example_sigma_and_limits():
    gmm = random_mixture(2, 3, torch.Generator().manual_seed(4))
    x = torch.randn(5, 2, dtype=torch.float64) * 3
    sigma = torch.tensor([0.01, 0.5, 1.0, 3.0, 50.0], dtype=torch.float64)
    one_by_one = torch.cat([gmm.denoiser(x[i : i + 1], sigma[i].item()) for i in range(5)])
    torch.testing.assert_close(gmm.denoiser(x, sigma), one_by_one)
    torch.testing.assert_close(gmm.denoiser(x, 0.0), x)  # clean data is its own estimate
    far = gmm.denoiser(torch.zeros(1, 2, dtype=torch.float64), 1e4)[0]  # pure noise: the prior mean
    torch.testing.assert_close(far, gmm.mean, atol=1e-6, rtol=0)


def test_float32_matches_float64():
    gmm = random_mixture(4, 3, torch.Generator().manual_seed(5))
    x = torch.randn(64, 4, dtype=torch.float64) * 4
    for sigma in (0.02, 1.0, 80.0):
        denoised32 = gmm.denoiser(x.float(), sigma)
        assert denoised32.dtype == torch.float32
        torch.testing.assert_close(denoised32.double(), gmm.denoiser(x, sigma), rtol=1e-4, atol=1e-4)
    assert random_mixture(2, 2, torch.Generator().manual_seed(0), dtype=torch.float32).sample(3).dtype == torch.float32


def test_diagonal_covs_equal_full_diagonal_covs():
    means, variances = torch.randn(3, 4, dtype=torch.float64), torch.rand(3, 4, dtype=torch.float64) + 0.1
    diag = GaussianMixture(means, variances, weights=torch.ones(3))
    full = GaussianMixture(means, torch.diag_embed(variances), weights=torch.ones(3))
    x = torch.randn(8, 4, dtype=torch.float64)
    torch.testing.assert_close(diag.denoiser(x, 0.4), full.denoiser(x, 0.4))
    torch.testing.assert_close(diag.log_prob(x), full.log_prob(x))


def test_sample_moments_and_components():
    gmm = random_mixture(3, 3, torch.Generator().manual_seed(6))
    n = 20_000
    x0, components = gmm.sample(n, torch.Generator().manual_seed(7), return_components=True)
    # 5 standard errors of the sample mean / covariance / frequencies
    assert ((x0.mean(0) - gmm.mean).abs() <= 5 * (gmm.covariance.diagonal() / n).sqrt()).all()
    cov_se = (gmm.covariance.diagonal()[:, None] * gmm.covariance.diagonal()[None] * 2 / n).sqrt()
    assert ((torch.cov(x0.T) - gmm.covariance).abs() <= 5 * cov_se + 1e-12).all()
    frequencies = torch.bincount(components, minlength=3) / n
    assert ((frequencies - gmm.weights).abs() <= 5 * (gmm.weights * (1 - gmm.weights) / n).sqrt()).all()
    # the samples' own component is the most responsible one for well-separated mixtures
    assert (gmm.responsibilities(x0).argmax(-1) == components).double().mean() > 0.98


def test_random_mixture_is_separated_and_deterministic():
    a = random_mixture(2, 4, torch.Generator().manual_seed(8), separation=5.0)
    b = random_mixture(2, 4, torch.Generator().manual_seed(8), separation=5.0)
    torch.testing.assert_close(a.means, b.means)
    torch.testing.assert_close(a.covs, b.covs)
    max_std = torch.linalg.eigvalsh(a.covs).max().sqrt()
    assert torch.pdist(a.means).min() >= 5.0 * max_std
    assert math.isclose(a.weights.sum().item(), 1.0) and a.weights.min() > 0.5 / 1.5 / 4


def test_bad_inputs_raise():
    means = torch.zeros(2, 3)
    with pytest.raises(ValueError, match="positive definite"):
        GaussianMixture(means, torch.zeros(2, 3), torch.ones(2))
    with pytest.raises(ValueError, match="symmetric"):
        GaussianMixture(means, torch.eye(3).expand(2, 3, 3) + torch.triu(torch.ones(3, 3), 1), torch.ones(2))
    with pytest.raises(ValueError, match="covs must have shape"):
        GaussianMixture(means, torch.ones(2, 4), torch.ones(2))
    with pytest.raises(ValueError, match="weights"):
        GaussianMixture(means, torch.ones(2, 3), torch.tensor([1.0, -1.0]))
    with pytest.raises(ValueError, match="means"):
        GaussianMixture(torch.zeros(3), torch.ones(2, 3), torch.ones(2))
    gmm = GaussianMixture(means, torch.ones(2, 3), torch.ones(2))
    with pytest.raises(ValueError, match=r"shape \[B, 3\]"):
        gmm.denoiser(torch.zeros(4, 2), 1.0)
    with pytest.raises(ValueError, match="sigma"):
        gmm.denoiser(torch.zeros(4, 3), torch.ones(3))
