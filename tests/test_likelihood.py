"""Probability-flow ODE likelihoods against the closed-form Gaussian-mixture density; bits/dim of an image model."""

from __future__ import annotations

import math

import pytest
import torch

from noisecraft.diffusion.gmm import GaussianMixture, random_mixture
from noisecraft.diffusion.likelihood import bits_per_dim_from_log_likelihood, dequantize_images, log_likelihood

SIGMA_MIN, SIGMA_MAX = 0.002, 80.0


@pytest.fixture(scope="module")
def mixture():
    generator = torch.Generator().manual_seed(0)
    gmm = random_mixture(3, 3, generator=generator)
    return gmm, gmm.sample(6, generator=generator)


def exact_prior(gmm):
    return lambda y: gmm.log_prob(y, SIGMA_MAX)


def test_exact_trace_rk45_matches_the_mixture_density(mixture):
    gmm, x = mixture
    log_p = log_likelihood(gmm.denoiser, x, sigma_min=SIGMA_MIN, sigma_max=SIGMA_MAX, rtol=1e-5, exact_trace=True,
                           prior=exact_prior(gmm))
    error_per_dim = (log_p - gmm.log_prob(x, SIGMA_MIN)).abs().max().item() / gmm.dim
    assert error_per_dim < 0.01, error_per_dim


def test_exact_trace_heun_matches_the_mixture_density(mixture):
    gmm, x = mixture
    log_p, stats = log_likelihood(gmm.denoiser, x, steps=128, exact_trace=True, prior=exact_prior(gmm),
                                  return_stats=True)
    assert stats["nfe"] == 2 * 128
    assert (log_p - gmm.log_prob(x, SIGMA_MIN)).abs().max().item() / gmm.dim < 0.01


def test_gaussian_prior_is_accurate_for_centred_data():
    """The default prior N(0, sigma_max^2 I): exact up to O(data spread / sigma_max^2) for centred data."""
    generator = torch.Generator().manual_seed(1)
    means = torch.tensor([[1.0, -0.5], [-1.0, 0.5]], dtype=torch.float64)
    gmm = GaussianMixture(means, torch.tensor([[0.3, 0.5], [0.4, 0.2]], dtype=torch.float64),
                          torch.tensor([0.5, 0.5], dtype=torch.float64))
    x = gmm.sample(8, generator=generator)
    log_p = log_likelihood(gmm.denoiser, x, rtol=1e-6, exact_trace=True)
    assert (log_p - gmm.log_prob(x, SIGMA_MIN)).abs().max().item() / gmm.dim < 0.01


@pytest.mark.parametrize("probe", ["rademacher", "gaussian"])
def test_hutchinson_is_unbiased(mixture, probe):
    """Mean of 96 single-probe estimates per point vs the exact trace on the same Heun grid: within 4 std errors."""
    gmm, x = mixture
    repeats = 96
    exact = log_likelihood(gmm.denoiser, x, steps=12, exact_trace=True)
    estimates = log_likelihood(gmm.denoiser, x.repeat(repeats, 1), steps=12, probe=probe,
                               generator=torch.Generator().manual_seed(3)).view(repeats, len(x))
    mean, stderr = estimates.mean(0), estimates.std(0) / math.sqrt(repeats)
    assert (estimates.std(0) > 0).all()  # the estimates do vary: the test is not vacuous
    assert ((mean - exact).abs() < 4 * stderr + 1e-9).all(), ((mean - exact) / stderr)


def test_more_probes_shrink_the_spread(mixture):
    gmm, x = mixture
    point = x[:1].repeat(48, 1)
    one = log_likelihood(gmm.denoiser, point, steps=8, generator=torch.Generator().manual_seed(0))
    eight = log_likelihood(gmm.denoiser, point, steps=8, hutchinson_samples=8,
                           generator=torch.Generator().manual_seed(0))
    assert eight.std() < one.std()


def test_deterministic_given_the_generator(mixture):
    gmm, x = mixture

    def run(seed):
        return log_likelihood(gmm.denoiser, x, steps=6, generator=torch.Generator().manual_seed(seed))

    assert torch.equal(run(0), run(0))
    assert not torch.equal(run(0), run(1))


def test_bad_arguments_are_named(mixture):
    gmm, x = mixture
    with pytest.raises(ValueError, match="steps"):
        log_likelihood(gmm.denoiser, x, steps=4, rtol=1e-3)
    with pytest.raises(ValueError, match="sigma_min"):
        log_likelihood(gmm.denoiser, x, sigma_min=1.0, sigma_max=0.5)
    with pytest.raises(ValueError, match="probe"):
        log_likelihood(gmm.denoiser, x, steps=2, probe="sphere")
    with pytest.raises(ValueError, match="hutchinson_samples"):
        log_likelihood(gmm.denoiser, x, steps=2, hutchinson_samples=0)


def test_dequantisation_and_bits_per_dim_formula():
    images = torch.tensor([[-1.0, 1.0, 0.0, 0.2]])
    deq = dequantize_images(images, generator=torch.Generator().manual_seed(0))
    levels = torch.round((images + 1) * 127.5)
    lower = -1 + levels * 2 / 256
    assert ((deq >= lower) & (deq < lower + 2 / 256)).all() and deq.min() >= -1 and deq.max() <= 1
    # A uniform density on [-1, 1]^N (log p = -N ln 2) is exactly 8 bits per dimension.
    dim = 5
    assert bits_per_dim_from_log_likelihood(torch.tensor([-dim * math.log(2.0)]), dim).item() == pytest.approx(8.0)


def test_tiny_image_model_bits_per_dim_end_to_end(tmp_path):
    from noisecraft.images.likelihood import bits_per_dim, dataset_images, likelihood
    from noisecraft.images.pipeline import ImagePipeline
    from noisecraft.registry import get

    model_dir = get("image").resolve("tiny_model")(tmp_path / "tiny")
    pipeline = ImagePipeline.load(model_dir)
    images, labels = dataset_images("digits:test", pipeline.spec.shape, 3)
    first = bits_per_dim(pipeline, images, labels=labels, steps=3, seed=0, batch_size=2)
    again = bits_per_dim(pipeline, images, labels=labels, steps=3, seed=0, batch_size=2)
    assert torch.equal(first["per_image"], again["per_image"])
    assert first["per_image"].shape == (3,) and torch.isfinite(first["per_image"]).all()
    assert first["nfe"] == 2 * (2 * 3)  # two batches, 2 x steps denoiser calls each
    report = likelihood(model_dir, "digits:test", n=2, steps=2, out=tmp_path / "report.json")
    assert report["images"] == 2 and math.isfinite(report["bits_per_dim"]) and (tmp_path / "report.json").exists()

    import typer
    from typer.testing import CliRunner

    app = typer.Typer()
    app.command("likelihood")(likelihood)
    app.command("other")(lambda: None)  # two commands: typer keeps the sub-command name, as on the root app
    result = CliRunner().invoke(app, ["likelihood", str(model_dir), "digits:test", "-n", "1", "--steps", "1"])
    assert result.exit_code == 0, result.output
    assert '"images": 1' in result.output


def test_likelihood_command_scores_a_text_model_by_its_nelbo(tmp_path):
    from noisecraft.images.likelihood import likelihood
    from noisecraft.registry import get

    model_dir = get("text").resolve("tiny_model")(tmp_path / "text")
    heldout = tmp_path / "heldout.txt"
    heldout.write_text("Twinkle, twinkle, little star, how I wonder what you are. " * 4, encoding="utf-8")
    report = likelihood(model_dir, str(heldout), n=4, batch_size=4)
    assert report["windows"] == 4 and report["bits_per_char"] > 0 and "NELBO" in report["measure"]
