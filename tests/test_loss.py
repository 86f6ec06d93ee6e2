"""Training loss: sigma distributions, weightings (checked against the losses they claim to equal), DiffusionConfig."""

import json
import math

import pytest
import torch

from noisecraft.diffusion.config import DiffusionConfig
from noisecraft.diffusion.loss import (
    LogNormalSigma,
    LogUniformSigma,
    VPTimestepSigma,
    denoising_loss,
    get_weighting,
)
from noisecraft.diffusion.precond import EDMPrecond, VPEpsPrecond, VPredPrecond
from noisecraft.diffusion.vp import VPSchedule

SIGMA = torch.tensor([0.01, 0.3, 1.0, 4.0, 60.0], dtype=torch.float64)


def gen(seed):
    return torch.Generator().manual_seed(seed)


# --- sigma distributions ---


def test_lognormal_sigma_moments():
    log_sigma = LogNormalSigma(p_mean=-1.2, p_std=1.2)(40000, gen(0)).log()
    assert log_sigma.mean().item() == pytest.approx(-1.2, abs=0.03)
    assert log_sigma.std().item() == pytest.approx(1.2, abs=0.03)


def test_loguniform_sigma_range_and_log_mean():
    sigma = LogUniformSigma(0.01, 100.0)(40000, gen(1))
    assert sigma.min() >= 0.01 and sigma.max() <= 100.0
    assert sigma.log().mean().item() == pytest.approx(0.0, abs=0.05)  # midpoint of [ln 0.01, ln 100]


def test_vp_timestep_sigma_draws_table_entries_uniformly():
    vp = VPSchedule.linear(num_steps=10)
    sigma = VPTimestepSigma(vp)(20000, gen(2))
    index = torch.searchsorted(vp.sigmas.float(), sigma)
    torch.testing.assert_close(sigma, vp.sigmas.float()[index])
    counts = torch.bincount(index, minlength=10).float() / 20000
    torch.testing.assert_close(counts, torch.full((10,), 0.1), atol=0.015, rtol=0)


def test_samplers_are_reproducible_and_validate():
    assert torch.equal(LogNormalSigma()(5, gen(3)), LogNormalSigma()(5, gen(3)))
    with pytest.raises(ValueError, match="p_std"):
        LogNormalSigma(p_std=0)
    with pytest.raises(ValueError, match="sigma_min < sigma_max"):
        LogUniformSigma(1.0, 0.5)
    with pytest.raises(TypeError, match="VPSchedule"):
        VPTimestepSigma({"kind": "linear"})


# --- weightings: each x0-space weighting equals the loss it is derived from ---


def setup_batch(seed=4):
    g = gen(seed)
    x0 = torch.randn(len(SIGMA), 6, generator=g, dtype=torch.float64)
    noise = torch.randn(x0.shape, generator=g, dtype=torch.float64)
    x = x0 + SIGMA[:, None] * noise
    weights = torch.randn(6, 6, generator=g, dtype=torch.float64) / 3

    def denoiser(x, sigma):  # an arbitrary imperfect denoiser
        return torch.tanh(x @ weights) / (1 + sigma[:, None])

    return x0, noise, x, denoiser


def x0_loss(weighting, **options):
    x0, noise, _, denoiser = setup_batch()
    return denoising_loss(denoiser, x0, SIGMA, get_weighting(weighting, **options), noise=noise)


def test_eps_weighting_is_the_epsilon_mse():
    x0, noise, x, denoiser = setup_batch()
    eps_hat = (x - denoiser(x, SIGMA)) / SIGMA[:, None]
    torch.testing.assert_close(x0_loss("eps"), (eps_hat - noise).square().mean(1))


def test_v_weighting_is_the_v_mse():
    x0, noise, x, denoiser = setup_batch()
    alpha, sigma_t = (1 / (1 + SIGMA**2).sqrt())[:, None], (SIGMA / (1 + SIGMA**2).sqrt())[:, None]
    # invert VPredPrecond (sigma_data = 1): D = x / (1 + s^2) - sigma_t v
    v_hat = (x / (1 + SIGMA[:, None] ** 2) - denoiser(x, SIGMA)) / sigma_t
    torch.testing.assert_close(x0_loss("v"), (v_hat - (alpha * noise - sigma_t * x0)).square().mean(1))


def test_edm_weighting_is_the_mse_of_the_network_output():
    sigma_data = 0.5
    x0, noise, x, denoiser = setup_batch()
    s = SIGMA[:, None]
    c_skip, c_out = sigma_data**2 / (s**2 + sigma_data**2), s * sigma_data / (s**2 + sigma_data**2).sqrt()
    F_hat, F_target = (denoiser(x, SIGMA) - c_skip * x) / c_out, (x0 - c_skip * x) / c_out
    torch.testing.assert_close(x0_loss("edm", sigma_data=sigma_data), (F_hat - F_target).square().mean(1))


def test_min_snr_is_the_papers_epsilon_weighting():
    x0, noise, x, denoiser = setup_batch()
    snr = SIGMA.pow(-2)
    eps_mse = ((x - denoiser(x, SIGMA)) / SIGMA[:, None] - noise).square().mean(1)
    torch.testing.assert_close(x0_loss("min_snr", min_snr_gamma=5.0), snr.clamp(max=5.0) / snr * eps_mse)


def test_uniform_weighting_is_the_x0_mse():
    x0, noise, x, denoiser = setup_batch()
    torch.testing.assert_close(x0_loss("uniform"), (denoiser(x, SIGMA) - x0).square().mean(1))


def test_edm_weighting_gives_unit_loss_for_the_ideal_gaussian_denoiser():
    """For x0 ~ N(0, sd^2) the ideal D = sd^2 / (sd^2 + s^2) x has MSE s^2 sd^2 / (s^2 + sd^2) = 1 / lambda_edm."""
    sigma_data, n = 0.5, 4000
    for sigma in (0.01, 1.0, 50.0):
        x0 = sigma_data * torch.randn(n, 16, generator=gen(5), dtype=torch.float64)
        ideal = lambda x, s: sigma_data**2 / (sigma_data**2 + s[:, None] ** 2) * x  # noqa: E731
        loss = denoising_loss(ideal, x0, sigma, get_weighting("edm", sigma_data=sigma_data), generator=gen(6))
        assert loss.mean().item() == pytest.approx(1.0, abs=0.02)


def test_denoising_loss_passes_condition_and_sigma_and_validates():
    seen = {}

    def denoiser(x, sigma, **cond):
        seen.update(sigma=sigma, **cond)
        return torch.zeros_like(x)

    x0 = torch.ones(3, 2, 2)
    labels = torch.tensor([0, 1, 2])
    loss = denoising_loss(denoiser, x0, 2.0, "uniform", generator=gen(7), class_labels=labels)
    torch.testing.assert_close(loss, torch.ones(3))  # D = 0: the x0-MSE of x0 = 1 is 1
    assert seen["class_labels"] is labels and seen["sigma"].shape == (3,)
    with pytest.raises(ValueError, match="noise has shape"):
        denoising_loss(denoiser, x0, 2.0, "uniform", noise=torch.zeros(3, 4))
    with pytest.raises(ValueError, match="unknown weighting"):
        get_weighting("snr")


# --- DiffusionConfig ---


@pytest.mark.parametrize("preset", [DiffusionConfig.edm, DiffusionConfig.ddpm, DiffusionConfig.v_prediction])
def test_config_json_round_trip(preset):
    config = preset()
    assert DiffusionConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config


@pytest.mark.parametrize(
    "config, precond",
    [(DiffusionConfig.edm(), EDMPrecond), (DiffusionConfig.ddpm(), VPEpsPrecond),
     (DiffusionConfig.v_prediction(), VPredPrecond), (DiffusionConfig.v_prediction(schedule=None), VPredPrecond)],
)
def test_config_makes_the_matching_denoiser(config, precond):
    denoiser = config.make_denoiser(torch.nn.Identity())
    assert type(denoiser) is precond and isinstance(denoiser.net, torch.nn.Identity)


def test_ddpm_config_trains_on_table_sigmas_and_samples_its_range():
    config = DiffusionConfig.ddpm("cosine")
    seen = []

    def denoiser(x, sigma):
        seen.append(sigma)
        return torch.zeros_like(x)

    loss = config.loss(denoiser, torch.zeros(64, 3), generator=gen(8))
    assert loss.shape == (64,)
    table = config.vp.sigmas.float()
    assert torch.isin(seen[0], table).all()
    sigmas = config.sampling_sigmas(10)
    assert len(sigmas) == 11 and sigmas[-1] == 0
    assert sigmas[0].item() == pytest.approx(config.vp.sigma_max)
    assert sigmas[-2].item() == pytest.approx(config.vp.sigma_min)
    assert torch.isin(config.sampling_sigmas(10, "discrete")[:-1], config.vp.sigmas).all()


def test_config_loss_is_reproducible_and_drops_conditions():
    config = DiffusionConfig.edm(cond_drop_prob=0.3)
    seen = []

    def denoiser(x, sigma, class_labels):
        seen.append(class_labels)
        return x / (1 + sigma[:, None] ** 2)

    x0, labels, null = torch.randn(4000, 2, generator=gen(9)), torch.zeros(4000, dtype=torch.long), torch.tensor(10)
    a = config.loss(denoiser, x0, generator=gen(10), null_cond={"class_labels": null}, class_labels=labels)
    b = config.loss(denoiser, x0, generator=gen(10), null_cond={"class_labels": null}, class_labels=labels)
    torch.testing.assert_close(a, b)
    assert (seen[0] == 10).float().mean().item() == pytest.approx(0.3, abs=0.03)
    with pytest.raises(ValueError, match="needs null_cond"):
        config.loss(denoiser, x0, class_labels=labels)


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(parameterization="x0"), "parameterization must be one of"),
        (dict(weighting="snr"), "weighting must be one of"),
        (dict(sigma_min=10.0, sigma_max=1.0), "sigma_min < sigma_max"),
        (dict(cond_drop_prob=1.0), "cond_drop_prob"),
        (dict(sigma_data=-1.0), "sigma_data must be > 0"),
        (dict(parameterization="eps"), "needs a vp_schedule"),
        (dict(vp_schedule={"kind": "quadratic"}), "unknown VP schedule kind"),
    ],
)
def test_config_rejects_bad_values(overrides, message):
    with pytest.raises(ValueError, match=message):
        DiffusionConfig(**overrides)


def test_config_from_dict_rejects_unknown_keys_and_accepts_a_schedule_object():
    with pytest.raises(ValueError, match=r"unknown DiffusionConfig keys \['sigma_maximum'\]"):
        DiffusionConfig.from_dict({"sigma_maximum": 80})
    config = DiffusionConfig(vp_schedule=VPSchedule.linear(num_steps=50), train_sigma="vp_timestep")
    assert config.vp_schedule == {"kind": "linear", "num_steps": 50, "beta_start": 1e-4, "beta_end": 0.02}
    assert math.isclose(config.vp.sigma_max, VPSchedule.linear(num_steps=50).sigma_max)


# --- weight_mask: a weighted mean over elements ---


def elementwise_denoiser(x, sigma):
    """Acts on each element alone, so padded elements cannot reach real ones through the network."""
    return torch.tanh(x) / (1 + sigma.reshape(-1, *[1] * (x.ndim - 1)))


def test_weight_mask_padded_points_cannot_change_the_loss():
    """Point clouds [B, N, 3] padded to N = 6: the masked loss of each example is the plain loss of its real points."""
    g = gen(12)
    lengths = [6, 4, 1, 0]
    x0 = torch.randn(4, 6, 3, generator=g, dtype=torch.float64)
    noise = torch.randn(x0.shape, generator=g, dtype=torch.float64)
    sigma = torch.tensor([0.1, 0.5, 2.0, 7.0], dtype=torch.float64)
    mask = (torch.arange(6)[None, :] < torch.tensor(lengths)[:, None]).unsqueeze(-1)  # [B, N, 1]
    padded = ~mask.expand_as(x0)
    garbage_x0 = torch.where(padded, 1e6 * torch.randn(x0.shape, generator=g, dtype=torch.float64), x0)
    garbage_noise = torch.where(padded, -3e5, noise)
    loss = denoising_loss(elementwise_denoiser, x0, sigma, "edm", noise=noise, weight_mask=mask)
    garbage = denoising_loss(elementwise_denoiser, garbage_x0, sigma, "edm", noise=garbage_noise, weight_mask=mask)
    assert torch.equal(loss, garbage)
    for b, n in enumerate(lengths[:-1]):
        alone = denoising_loss(elementwise_denoiser, x0[b : b + 1, :n], sigma[b], "edm", noise=noise[b : b + 1, :n])
        torch.testing.assert_close(loss[b : b + 1], alone, rtol=1e-12, atol=0)
    assert loss[3] == 0  # an example with no real element costs nothing (and is not NaN)
    unmasked = denoising_loss(elementwise_denoiser, garbage_x0, sigma, "edm", noise=garbage_noise)
    assert (unmasked[1:3] > 1e3 * loss[1:3]).all()  # without the mask the garbage dominates


def test_weight_mask_of_ones_is_the_unmasked_loss_and_weights_are_a_weighted_mean():
    x0, noise, _, denoiser = setup_batch()
    plain = denoising_loss(denoiser, x0, SIGMA, "eps", noise=noise)
    ones = denoising_loss(denoiser, x0, SIGMA, "eps", noise=noise, weight_mask=torch.ones(len(SIGMA), 6))
    torch.testing.assert_close(ones, plain, rtol=0, atol=1e-7 * plain.abs().max().item())
    broadcast = denoising_loss(denoiser, x0, SIGMA, "eps", noise=noise, weight_mask=torch.ones(1, 1, dtype=torch.bool))
    torch.testing.assert_close(broadcast, plain, rtol=0, atol=1e-7 * plain.abs().max().item())
    w = torch.rand(len(SIGMA), 6, generator=gen(13), dtype=torch.float64)  # [B, D] e.g. missing values = 0
    w[:, 0] = 0
    err2 = (denoiser(x0 + SIGMA[:, None] * noise, SIGMA) - x0).square()
    expected = SIGMA.pow(-2) * (w * err2).sum(1) / w.sum(1)
    torch.testing.assert_close(denoising_loss(denoiser, x0, SIGMA, "eps", noise=noise, weight_mask=w), expected)
    with pytest.raises(ValueError, match="does not broadcast"):
        denoising_loss(denoiser, x0, SIGMA, "eps", noise=noise, weight_mask=torch.ones(len(SIGMA), 5))


def test_config_loss_passes_the_weight_mask():
    config = DiffusionConfig.edm()
    x0 = torch.randn(8, 5, 2, generator=gen(14))
    mask = torch.ones(8, 5, 1)
    mask[:, 3:] = 0
    garbage = torch.where(mask.bool(), x0, 1e4)
    a = config.loss(elementwise_denoiser, x0, generator=gen(15), weight_mask=mask)
    b = config.loss(elementwise_denoiser, garbage, generator=gen(15), weight_mask=mask)
    torch.testing.assert_close(a, b)
    assert not torch.allclose(config.loss(elementwise_denoiser, garbage, generator=gen(15)), a)
