"""Sampling schedules (schedules.py) and the VP/DDPM noise tables (vp.py)."""

import math

import pytest
import torch

from noisecraft.diffusion import schedules
from noisecraft.diffusion.vp import VPSchedule, vp_sigma, vp_sigma_inv

SIGMA_MIN, SIGMA_MAX = 0.002, 80.0
CONTINUOUS = ["karras", "exponential", "polyexponential", "vp", "linear"]


@pytest.mark.parametrize("name", CONTINUOUS)
@pytest.mark.parametrize("n", [1, 2, 7, 40])
def test_schedule_contract(name, n):
    sigmas = schedules.get_schedule(name)(n, SIGMA_MIN, SIGMA_MAX)
    assert sigmas.shape == (n + 1,) and sigmas.dtype == torch.float64
    assert sigmas[-1] == 0
    assert bool((sigmas[1:] < sigmas[:-1]).all()), "must be strictly descending"
    assert sigmas[0].item() == pytest.approx(SIGMA_MAX, rel=1e-12)
    if n > 1:
        assert sigmas[n - 1].item() == pytest.approx(SIGMA_MIN, rel=1e-12)


def test_karras_matches_eq5():
    n, rho = 10, 7.0
    sigmas = schedules.karras(n, SIGMA_MIN, SIGMA_MAX, rho=rho)
    for i in (0, 3, 9):
        expected = (SIGMA_MAX ** (1 / rho) + i / (n - 1) * (SIGMA_MIN ** (1 / rho) - SIGMA_MAX ** (1 / rho))) ** rho
        assert sigmas[i].item() == pytest.approx(expected, rel=1e-12)
    # rho = 1 is uniform in sigma
    uniform = schedules.linear(n, SIGMA_MIN, SIGMA_MAX)
    torch.testing.assert_close(schedules.karras(n, SIGMA_MIN, SIGMA_MAX, rho=1.0), uniform)


def test_spacings_are_uniform_in_their_variable():
    n = 12
    log_steps = schedules.exponential(n, SIGMA_MIN, SIGMA_MAX)[:-1].log().diff()
    torch.testing.assert_close(log_steps, torch.full_like(log_steps, math.log(SIGMA_MIN / SIGMA_MAX) / (n - 1)))
    log_uniform = schedules.exponential(n, SIGMA_MIN, SIGMA_MAX)
    torch.testing.assert_close(schedules.polyexponential(n, SIGMA_MIN, SIGMA_MAX, rho=1.0), log_uniform)
    t_steps = vp_sigma_inv(schedules.vp(n, SIGMA_MIN, SIGMA_MAX)[:-1]).diff()
    torch.testing.assert_close(t_steps, torch.full_like(t_steps, t_steps.mean().item()))
    linear_steps = schedules.linear(n, SIGMA_MIN, SIGMA_MAX)[:-1].diff()
    torch.testing.assert_close(linear_steps, torch.full_like(linear_steps, (SIGMA_MIN - SIGMA_MAX) / (n - 1)))
    # polyexponential rho > 1 puts more steps at low noise than exponential
    assert schedules.polyexponential(n, SIGMA_MIN, SIGMA_MAX, rho=2.0)[5] < log_uniform[5]


def test_vp_schedule_default_range_is_edm_table1():
    sigmas = schedules.vp(5)
    assert sigmas[0].item() == pytest.approx(math.sqrt(math.exp(0.5 * 19.9 + 0.1) - 1), rel=1e-12)  # t = 1
    assert sigmas[-2].item() == pytest.approx(math.sqrt(math.exp(0.5 * 19.9 * 1e-6 + 0.1 * 1e-3) - 1), rel=1e-12)


def test_vp_sigma_inverse_round_trip():
    t = torch.linspace(1e-3, 1, 50, dtype=torch.float64)
    torch.testing.assert_close(vp_sigma_inv(vp_sigma(t)), t)
    assert vp_sigma(0.5).item() == pytest.approx(math.sqrt(math.exp(0.5 * 19.9 * 0.25 + 0.05) - 1))


@pytest.mark.parametrize(
    "args, match",
    [
        ((0, SIGMA_MIN, SIGMA_MAX), "n"),
        ((2.5, SIGMA_MIN, SIGMA_MAX), "n"),
        ((10, 0.0, SIGMA_MAX), "sigma_min"),
        ((10, SIGMA_MAX, SIGMA_MIN), "sigma_min"),
        ((10, SIGMA_MIN, math.inf), "sigma_max"),
    ],
)
@pytest.mark.parametrize("name", CONTINUOUS + ["discrete"])
def test_bad_arguments_raise(name, args, match):
    with pytest.raises(ValueError, match=match):
        schedules.get_schedule(name)(*args)


def test_bad_options_raise():
    with pytest.raises(ValueError, match="rho"):
        schedules.karras(10, SIGMA_MIN, SIGMA_MAX, rho=0.0)
    with pytest.raises(ValueError, match="valid names"):
        schedules.get_schedule("cosine-ish")
    with pytest.raises(ValueError, match="spacing"):
        schedules.discrete(10, spacing="uniform")
    with pytest.raises(TypeError, match="VPSchedule"):
        schedules.discrete(10, vp_schedule={"kind": "linear"})
    with pytest.raises(ValueError, match="entries"):
        schedules.discrete(5, sigma_min=1.0, sigma_max=1.02)  # 3 entries: t = 259..261


@pytest.mark.parametrize(
    "spacing, timesteps",
    [  # diffusers' DDIM/DDPM scheduler timesteps for 1000 training steps and 10 inference steps
        ("trailing", [999, 899, 799, 699, 599, 499, 399, 299, 199, 99]),
        ("leading", [900, 800, 700, 600, 500, 400, 300, 200, 100, 0]),
        ("linspace", [999, 888, 777, 666, 555, 444, 333, 222, 111, 0]),
    ],
)
def test_discrete_spacings_pick_ddpm_table_entries(spacing, timesteps):
    table = VPSchedule.linear()
    sigmas = schedules.discrete(10, vp_schedule=table, spacing=spacing)
    assert sigmas[-1] == 0 and bool((sigmas[1:] < sigmas[:-1]).all())
    torch.testing.assert_close(sigmas[:-1], table.sigmas[timesteps])


def test_discrete_restricts_to_sigma_range():
    table = VPSchedule.cosine()
    sigma_min, sigma_max = float(table.sigmas[100]), float(table.sigmas[899])  # table entries are kept
    sigmas = schedules.discrete(8, sigma_min, sigma_max, vp_schedule=table, spacing="linspace")
    assert sigmas[0].item() == pytest.approx(sigma_max) and sigmas[-2].item() == pytest.approx(sigma_min)
    assert table.sigma_to_t(sigmas[:-1]).round().tolist() == [899, 785, 671, 557, 442, 328, 214, 100]


# ------------------------------------------------------------------------------------------------ VPSchedule


def test_linear_table_matches_ddpm_definition():
    table = VPSchedule.linear(num_steps=1000, beta_start=1e-4, beta_end=0.02)
    betas = torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64)
    torch.testing.assert_close(table.betas, betas)
    abar = [math.prod(1 - b for b in betas[: t + 1].tolist()) for t in (0, 10, 500, 999)]
    abar = torch.tensor(abar, dtype=torch.float64)
    torch.testing.assert_close(table.alphas_cumprod[[0, 10, 500, 999]], abar)
    torch.testing.assert_close(table.sigmas, ((1 - table.alphas_cumprod) / table.alphas_cumprod).sqrt())
    assert table.sigma_min == pytest.approx(math.sqrt(1e-4 / (1 - 1e-4)))
    assert table.sigma_max == pytest.approx(157.4, rel=1e-3)


def test_linear_table_is_the_discretized_vp_sde():
    # DDPM's linear betas are the VP-SDE with beta_min = 0.1, beta_d = 19.9 (EDM Table 1) sampled at t = (i+1)/1000.
    # Compared in -log(abar) = log(1 + sigma^2) = sum_i -log(1 - beta_i), which the SDE approximates by sum_i beta_i:
    # the gap is the beta^2 / 2 term, under 1% of the total once past the first steps.
    table = VPSchedule.linear()
    t = torch.arange(100, 1000)
    relative = (table.sigmas[t].pow(2).log1p() / vp_sigma((t + 1) / 1000).pow(2).log1p() - 1).abs().max()
    assert relative < 0.01


def test_cosine_table_matches_nichol_dhariwal_eq17():
    num_steps, s = 1000, 0.008
    table = VPSchedule.cosine(num_steps=num_steps, s=s)
    f = lambda t: math.cos((t / num_steps + s) / (1 + s) * math.pi / 2) ** 2  # noqa: E731
    for t in (0, 1, 500, 900):  # before the max_beta clipping
        assert table.alphas_cumprod[t].item() == pytest.approx(f(t + 1) / f(0), rel=1e-10)
    assert table.betas.max().item() == pytest.approx(0.999)


def test_sigma_t_round_trip_and_table_entries():
    table = VPSchedule.linear()
    t = torch.linspace(0, 999, 777, dtype=torch.float64)
    torch.testing.assert_close(table.sigma_to_t(table.t_to_sigma(t)), t)
    integer_t = torch.tensor([0, 1, 17, 500, 998, 999])
    torch.testing.assert_close(table.t_to_sigma(integer_t.double()), table.sigmas[integer_t])
    torch.testing.assert_close(table.sigma_to_t(table.sigmas[integer_t]), integer_t.double())
    # halfway in log-sigma between two entries is t + 0.5; outside the table clamps
    midpoint = (table.sigmas[10] * table.sigmas[11]).sqrt()
    assert table.sigma_to_t(midpoint).item() == pytest.approx(10.5)
    assert table.sigma_to_t(1e-6).item() == 0 and table.sigma_to_t(1e6).item() == 999
    # keeps the caller's dtype and shape (float32 [B] from a preconditioner)
    sigma = torch.tensor([[0.5, 3.0]], dtype=torch.float32)
    assert table.sigma_to_t(sigma).dtype == torch.float32 and table.sigma_to_t(sigma).shape == (1, 2)


@pytest.mark.parametrize(
    "build",
    [VPSchedule.linear, VPSchedule.cosine, VPSchedule.scaled_linear, lambda: VPSchedule(torch.full((50,), 0.02))],
)
def test_to_dict_round_trip(build):
    table = build()
    rebuilt = VPSchedule.from_dict(table.to_dict())
    torch.testing.assert_close(rebuilt.sigmas, table.sigmas)
    assert rebuilt.to_dict() == table.to_dict()


def test_vp_schedule_bad_inputs_raise():
    with pytest.raises(ValueError, match="between 0 and 1"):
        VPSchedule(torch.tensor([0.1, 1.5]))
    with pytest.raises(ValueError, match="1-D"):
        VPSchedule(torch.ones(2, 2) * 0.1)
    with pytest.raises(ValueError, match="beta_start"):
        VPSchedule.linear(beta_start=0.1, beta_end=0.01)
    with pytest.raises(ValueError, match="num_steps"):
        VPSchedule.cosine(num_steps=1)
    with pytest.raises(ValueError, match="valid kinds"):
        VPSchedule.from_dict({"kind": "sigmoid"})
