"""Samplers (samplers.py) driven by the exact Gaussian-mixture denoiser, so every error is the sampler's own."""

import math

import pytest
import torch

from noisecraft.diffusion import samplers, schedules
from noisecraft.diffusion.gmm import random_mixture
from noisecraft.diffusion.vp import VPSchedule

STOCHASTIC = {
    "euler_ancestral": {},
    "ddpm": {},
    "ddim": {"eta": 1.0},
    "dpmpp_2m_sde": {},
    "dpmpp_3m_sde": {},
    "heun": {"s_churn": 20.0},
}




@pytest.fixture(scope="module")
def mixture():
    return random_mixture(dim=3, n_components=3, generator=torch.Generator().manual_seed(0))


def _sample(name, gmm, noise, sigmas, seed=1, **options):
    generator = torch.Generator().manual_seed(seed)
    return samplers.get_sampler(name)(gmm.denoiser, noise * sigmas[0], sigmas, generator=generator, **options)


@pytest.mark.parametrize(
    "name, options",
    # "consistency" needs a consistency function, not a denoiser: tested in test_distill.py
    [(name, {}) for name in samplers.SAMPLERS if name != "consistency"]
    + [("heun", {"s_churn": 20.0}), ("dpmpp_2m_sde", {"solver_type": "heun"}), ("unipc", {"order": 3})]
    + [("ddim", {"eta": 0.5})],
)
def test_recovers_mixture_statistics(mixture, name, options):
    """100 karras steps from 3000 float32 noises: mean, covariance and weights within 4 standard errors.

    An exact sampler maps the noise to independent draws from the mixture, whose statistics then deviate from the
    exact ones by about one standard error (estimated from the samples); wrong signs or scalings give tens.
    The weights are the average responsibilities, an unbiased estimate of w_k for exact samples.
    """
    n = 3000
    noise = torch.randn(n, 3, generator=torch.Generator().manual_seed(2))
    x = _sample(name, mixture, noise, schedules.karras(100, 0.002, 80.0), **options)
    assert x.dtype == torch.float32 and torch.isfinite(x).all()
    x = x.double()
    centered = x - x.mean(0)
    products = centered[:, :, None] * centered[:, None, :]
    responsibilities = mixture.responsibilities(x)
    for estimate, exact, per_sample in [
        (x.mean(0), mixture.mean, x),
        (products.mean(0), mixture.covariance, products),
        (responsibilities.mean(0), mixture.weights, responsibilities),
    ]:
        standard_error = per_sample.std(0) / math.sqrt(n)
        assert ((estimate - exact).abs() <= 4 * standard_error).all(), (estimate, exact, standard_error)


@pytest.fixture(scope="module")
def ode_problem():
    """64 float64 trajectories from sigma = 20 to 0.1 and their end points from 1024 Heun steps (error ~1e-6)."""
    gmm = random_mixture(dim=2, n_components=3, generator=torch.Generator().manual_seed(0))
    sigma_min, sigma_max = 0.1, 20.0
    noise = torch.randn(64, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64) * sigma_max
    reference = samplers.sample_heun(gmm.denoiser, noise, schedules.karras(1024, sigma_min, sigma_max)[:-1])
    return gmm, noise, (sigma_min, sigma_max), reference


@pytest.mark.parametrize(
    "name, options, low, high",
    [
        ("euler", {}, 0.85, 1.2),
        ("heun", {}, 1.8, 2.4),
        ("dpm_2", {}, 1.8, 2.4),
        ("dpmpp_2m", {}, 1.8, 2.5),
        ("unipc", {"use_corrector": False}, 1.8, 2.5),  # UniP-2 alone is DPM-Solver++(2M)
        ("unipc", {}, 2.7, 3.6),  # the corrector raises the order by one (Zhao et al. 2023, sec. 3.2)
        ("unipc", {"order": 3}, 3.0, 4.5),
    ],
)
def test_convergence_order(ode_problem, name, options, low, high):
    """Slope of log(error) vs log(n) at 16, 32, 64 karras steps, measured at sigma_min (no final jump to 0)."""
    gmm, noise, (sigma_min, sigma_max), reference = ode_problem
    steps = torch.tensor([16.0, 32.0, 64.0], dtype=torch.float64)
    errors = []
    for n in steps.int().tolist():
        x = samplers.get_sampler(name)(gmm.denoiser, noise, schedules.karras(n, sigma_min, sigma_max)[:-1], **options)
        # Median over trajectories: the odd one that starts on a decision boundary flips mode at coarse steps.
        errors.append((x - reference).norm(dim=-1).median().item())
    log_n, log_error = steps.log(), torch.tensor(errors, dtype=torch.float64).log()
    centered = log_n - log_n.mean()
    order = -(centered * log_error).sum() / centered.pow(2).sum()  # least-squares slope
    assert low <= order.item() <= high, (errors, order)


def test_ddim_eta0_is_euler(mixture):
    noise = torch.randn(32, 3, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    sigmas = schedules.karras(12, 0.002, 80.0)
    euler = _sample("euler", mixture, noise, sigmas)
    torch.testing.assert_close(_sample("ddim", mixture, noise, sigmas, eta=0.0), euler)
    # ... and DDPM is DDIM with eta = 1 (same noise draws)
    ddim_eta1 = _sample("ddim", mixture, noise, sigmas, eta=1.0)
    torch.testing.assert_close(_sample("ddpm", mixture, noise, sigmas), ddim_eta1)


def test_dpmpp_sde_with_eta0_is_the_ode(mixture):
    noise = torch.randn(32, 3, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    sigmas = schedules.karras(12, 0.002, 80.0)
    ode = _sample("dpmpp_2m", mixture, noise, sigmas)
    torch.testing.assert_close(_sample("dpmpp_2m_sde", mixture, noise, sigmas, eta=0.0), ode)


def test_ddpm_step_is_the_textbook_posterior_step():
    """One sigma-form step between DDPM table entries t -> t-1 equals Ho et al. eqs. 6-7 in x_t = sqrt(abar) x_sigma."""
    table, t = VPSchedule.linear(), 600
    abar, abar_prev, beta = table.alphas_cumprod[t], table.alphas_cumprod[t - 1], table.betas[t]
    x0_hat = torch.randn(16, 3, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    x_t = torch.randn(16, 3, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    x_sigma = x_t / abar.sqrt()
    out = samplers.sample_ddpm(
        lambda x, sigma: x0_hat, x_sigma, table.sigmas[[t, t - 1]], generator=torch.Generator().manual_seed(7)
    )
    z = torch.randn(16, 3, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    mean = abar_prev.sqrt() * beta / (1 - abar) * x0_hat + (1 - beta).sqrt() * (1 - abar_prev) / (1 - abar) * x_t
    x_prev = mean + ((1 - abar_prev) / (1 - abar) * beta).sqrt() * z
    torch.testing.assert_close(out * abar_prev.sqrt(), x_prev)


@pytest.mark.parametrize("name, options", STOCHASTIC.items())
def test_stochastic_samplers_are_reproducible(mixture, name, options):
    noise = torch.randn(8, 3, generator=torch.Generator().manual_seed(8))
    sigmas = schedules.karras(10, 0.002, 80.0)
    first, second = (_sample(name, mixture, noise, sigmas, seed=11, **options) for _ in range(2))
    assert torch.equal(first, second)
    assert not torch.allclose(first, _sample(name, mixture, noise, sigmas, seed=12, **options))


@pytest.mark.parametrize("name", list(samplers.SAMPLERS))
def test_callback_and_nfe(mixture, name):
    calls, infos = [], []

    def counting_denoiser(x, sigma):
        assert sigma.shape == (x.shape[0],)  # per-example sigma, as the contract says
        calls.append(sigma[0].item())
        return mixture.denoiser(x, sigma)

    sigmas = schedules.karras(7, 0.002, 80.0)
    noise = torch.randn(4, 3, generator=torch.Generator().manual_seed(9), dtype=torch.float64) * 80.0
    sampler = samplers.get_sampler(name)
    out = sampler(counting_denoiser, noise, sigmas, callback=infos.append, generator=torch.Generator())
    assert len(calls) == samplers.nfe(name, 7)
    assert [info["i"] for info in infos] == list(range(7))
    assert [info["sigma"] for info in infos] == pytest.approx(sigmas[:-1].tolist())
    assert [info["sigma_next"] for info in infos] == pytest.approx(sigmas[1:].tolist())
    assert torch.equal(infos[-1]["x"], out)
    if name != "lms":  # lms integrates its polynomial down to 0; the others end on the denoised estimate
        torch.testing.assert_close(out, infos[-1]["denoised"])


def test_nfe_and_registry():
    assert samplers.nfe("heun", 18) == 35 and samplers.nfe("dpmpp_2m", 18) == 18
    with pytest.raises(ValueError, match="valid names"):
        samplers.get_sampler("plms")
    with pytest.raises(ValueError, match="n_steps"):
        samplers.nfe("euler", 0)


def test_bad_inputs_raise(mixture):
    x = torch.randn(4, 3)
    sigmas = schedules.karras(5, 0.002, 80.0)
    with pytest.raises(ValueError, match="descending"):
        samplers.sample_euler(mixture.denoiser, x, sigmas.flip(0)[1:])
    with pytest.raises(ValueError, match="only the last"):
        samplers.sample_euler(mixture.denoiser, x, torch.tensor([1.0, 0.0, -1.0]))
    with pytest.raises(ValueError, match="1-D"):
        samplers.sample_euler(mixture.denoiser, x, sigmas[None])
    with pytest.raises(TypeError, match="floating-point tensor"):
        samplers.sample_euler(mixture.denoiser, x.long(), sigmas)
    with pytest.raises(ValueError, match="shaped like x"):
        samplers.sample_heun(lambda x, sigma: x[:, :2], x, sigmas)
    with pytest.raises(ValueError, match="order"):
        samplers.sample_unipc(mixture.denoiser, x, sigmas, order=5)
    with pytest.raises(ValueError, match="solver_type"):
        samplers.sample_dpmpp_2m_sde(mixture.denoiser, x, sigmas, solver_type="rk4")
    with pytest.raises(ValueError, match="eta"):
        samplers.sample_dpmpp_3m_sde(mixture.denoiser, x, sigmas, eta=-1.0)


# --- the noise hook ---

NOISY = {**STOCHASTIC, "euler": {"s_churn": 20.0}, "ddim": {"eta": 0.5}, "dpmpp_2m_sde_heun": {"solver_type": "heun"}}


def _get(name):
    return samplers.get_sampler(name.removesuffix("_heun"))


@pytest.mark.parametrize("name, options", NOISY.items())
def test_default_noise_is_randn_from_the_generator_in_order(mixture, name, options):
    """noise_sampler=None is bit-identical to a hook that draws torch.randn from the same generator."""
    noise = torch.randn(8, 3, generator=torch.Generator().manual_seed(8))
    sigmas = schedules.karras(10, 0.002, 80.0)
    default = _sample(name.removesuffix("_heun"), mixture, noise, sigmas, seed=11, **options)
    g = torch.Generator().manual_seed(11)
    calls = []

    def randn(sigma, sigma_next):
        calls.append((sigma, sigma_next))
        return torch.randn(noise.shape, generator=g)

    hooked = _get(name)(mixture.denoiser, noise * sigmas[0], sigmas, noise_sampler=randn, **options)
    assert calls and torch.equal(default, hooked)


def com_free_noise(shape, generator):
    def noise_sampler(sigma, sigma_next):
        z = torch.randn(shape, generator=generator, dtype=torch.float64)
        return z - z.mean(1, keepdim=True)

    return noise_sampler


@pytest.mark.parametrize("name, options", NOISY.items())
def test_centre_of_mass_free_noise_keeps_point_clouds_centred(name, options):
    """x = [B, N, 3] points; D(x) = x / (1 + sigma^2) (the ideal denoiser of N(0, I) data) scales the centre of mass
    but never creates one, so a centred start and centred noise give centred samples; default noise does not."""
    shape, sigmas = (16, 5, 3), schedules.karras(12, 0.002, 80.0)
    start = com_free_noise(shape, torch.Generator().manual_seed(1))(0, 0) * sigmas[0]

    def denoiser(x, sigma):
        return x / (1 + sigma.reshape(-1, 1, 1) ** 2)

    centred = _get(name)(denoiser, start, sigmas, noise_sampler=com_free_noise(shape, torch.Generator().manual_seed(2)),
                         **options)
    assert centred.mean(1).abs().max() < 1e-5 and centred.std() > 0.1
    default = _get(name)(denoiser, start, sigmas, generator=torch.Generator().manual_seed(2), **options)
    assert default.mean(1).abs().max() > 1e-2


def test_noise_sampler_gets_the_step_sigmas():
    sigmas = schedules.karras(4, 0.002, 80.0)
    calls = []

    def record(sigma, sigma_next):
        calls.append((sigma, sigma_next))
        return torch.zeros(2, 3, dtype=torch.float64)

    x = torch.ones(2, 3, dtype=torch.float64)
    samplers.sample_euler_ancestral(lambda x, s: 0 * x, x, sigmas, noise_sampler=record)  # none at sigma = 0
    assert sum(calls, ()) == pytest.approx(sum([(sigmas[i].item(), sigmas[i + 1].item()) for i in range(3)], ()))
    calls.clear()
    samplers.sample_euler(lambda x, s: 0 * x, x, sigmas, noise_sampler=record, s_churn=1.0)
    gamma = min(1.0 / 4, math.sqrt(2) - 1)
    assert sum(calls, ()) == pytest.approx(sum([(s, s * (1 + gamma)) for s in sigmas[:-1].tolist()], ()))  # sigma_hat
    with pytest.raises(ValueError, match="noise_sampler"):
        samplers.sample_ddpm(lambda x, s: 0 * x, x, sigmas, noise_sampler=lambda s, t: torch.zeros(2))
