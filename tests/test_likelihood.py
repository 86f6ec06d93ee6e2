"""Probability-flow ODE likelihoods against the closed-form Gaussian-mixture density; bits/dim of an image model."""

from __future__ import annotations

import json
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


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    from noisecraft.registry import get

    root = tmp_path_factory.mktemp("likelihood")
    return {name: get(name).resolve("tiny_model")(root / name) for name in ("image", "text")}


def run_cli(args, capsys):
    """``noisecraft ARGS`` in-process: (exit status, stdout, stderr)."""
    from noisecraft.cli import main

    try:
        main([str(arg) for arg in args])
        status = 0
    except SystemExit as exit_:
        status = exit_.code or 0
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_bits_per_dim_of_a_tiny_image_model(tiny_models):
    from noisecraft.images.likelihood import bits_per_dim, dataset_images
    from noisecraft.images.pipeline import ImagePipeline

    pipeline = ImagePipeline.load(tiny_models["image"])
    images, labels = dataset_images("digits:test", pipeline.spec.shape, 3)
    first = bits_per_dim(pipeline, images, labels=labels, steps=3, seed=0, batch_size=2)
    again = bits_per_dim(pipeline, images, labels=labels, steps=3, seed=0, batch_size=2)
    assert torch.equal(first["per_image"], again["per_image"])
    assert first["per_image"].shape == (3,) and torch.isfinite(first["per_image"]).all()
    assert first["nfe"] == 2 * (2 * 3)  # two batches, 2 x steps denoiser calls each
    with pytest.raises(ValueError, match=r"gives \[1, 8, 8\] images"):
        dataset_images("digits:test", [3, 8, 8], 2)


def test_cli_image_model_end_to_end_and_deterministic(tiny_models, tmp_path, capsys):
    model = tiny_models["image"]
    args = ["likelihood", model, "digits:test", "--limit", "3", "--batch", "2", "--steps", "2", "--hutchinson", "2"]
    status, out, err = run_cli([*args, "--seed", "5", "-o", tmp_path / "a.json"], capsys)
    assert status == 0, err
    report = json.loads((tmp_path / "a.json").read_text())
    assert json.loads(out) == report
    assert report["kind"] == "image" and report["images"] == 3 and report["nfe"] == 2 * (2 * 2)
    assert math.isfinite(report["bits_per_dim"]) and "dequantisation" in report["measure"]
    assert report["conditioned_on_labels"] and report["seed"] == 5 and "2 rademacher" in report["divergence"]
    run_cli([*args, "--seed", "5", "-o", tmp_path / "b.json"], capsys)
    run_cli([*args, "--seed", "6", "-o", tmp_path / "c.json"], capsys)
    assert (tmp_path / "a.json").read_bytes() == (tmp_path / "b.json").read_bytes()
    assert json.loads((tmp_path / "c.json").read_text())["bits_per_dim"] != report["bits_per_dim"]


def test_cli_text_model_reports_its_nelbo(tiny_models, tmp_path, capsys):
    heldout = tmp_path / "heldout.txt"
    heldout.write_text("Twinkle, twinkle, little star, how I wonder what you are. " * 4, encoding="utf-8")
    args = ["likelihood", tiny_models["text"], heldout, "--limit", "3", "--batch", "2", "--samples", "2"]
    outputs = [run_cli([*args, "--seed", seed], capsys) for seed in (0, 0, 1)]
    assert [status for status, _, _ in outputs] == [0, 0, 0], outputs[0][2]
    report = json.loads(outputs[0][1])
    assert report["kind"] == "text" and report["windows"] == 3 and report["mc_samples"] == 2
    assert report["bits_per_char"] > 0 and "NELBO" in report["measure"]
    assert outputs[0][1] == outputs[1][1] and outputs[0][1] != outputs[2][1]


def test_cli_molecule_model_reports_its_nelbo(tmp_path, capsys):
    pytest.importorskip("rdkit")
    from noisecraft.registry import get

    model = get("molecules").resolve("tiny_model")(tmp_path / "molecules")
    smiles = tmp_path / "molecules.smi"
    smiles.write_text("CCO\nc1ccccc1\nnot a molecule\nCC(=O)O\n", encoding="utf-8")
    status, out, err = run_cli(["likelihood", model, smiles, "--samples", "2"], capsys)
    assert status == 0, err
    report = json.loads(out)
    assert report["molecules"] == 3 and report["left_out"]["invalid_smiles"] == 1
    assert report["bits_per_molecule"] == pytest.approx(report["bits_per_token"] * report["length"])


def test_cli_bad_input_is_one_line(tiny_models, tmp_path, capsys):
    image, text = tiny_models["image"], tiny_models["text"]
    table = tmp_path / "table"  # a model kind without a likelihood: only its config is read
    table.mkdir()
    (table / "config.json").write_text(json.dumps({"model_config": {"kind": "tabular"}}))
    (table / "model.safetensors").write_bytes(b"")
    cases = [
        ([tmp_path / "nowhere", "digits:test"], "model folder not found"),
        ([image, tmp_path / "no_such_folder"], "no such directory"),
        ([image, "digitz"], "unknown data 'digitz'"),
        ([table, "digits:test"], "tabular model, which has no likelihood"),
        ([text, "default", "--steps", "4"], "--steps does not apply to text models"),
        ([image, "digits:test", "--samples", "2"], "--samples does not apply to image models"),
        ([image, "digits:test", "--steps", "2", "--rtol", "1e-3"], "either steps"),
        ([image, "digits:test", "--limit", "0"], "--limit must be a positive integer"),
        ([text, tmp_path], "holds no .txt files"),
    ]
    for args, message in cases:
        status, out, err = run_cli(["likelihood", *args], capsys)
        assert status == 2 and err.startswith("error: ") and message in err, (args, err)
        assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err


def test_every_likelihood_option_is_in_the_help(capsys):
    status, out, _ = run_cli(["likelihood", "--help"], capsys)
    assert status == 0
    for option in ("--batch", "--limit", "--steps", "--rtol", "--hutchinson", "--exact-trace", "--labels",
                   "--samples", "--seed", "--device", "--out"):
        assert option in out, option
