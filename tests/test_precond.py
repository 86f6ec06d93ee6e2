"""Preconditioners: a network that outputs the true training target must give D(x, sigma) == x0 exactly."""

import math

import pytest
import torch

from noisecraft.diffusion.precond import EDMPrecond, VPEpsPrecond, VPredPrecond, batch_sigma
from noisecraft.diffusion.vp import VPSchedule

SIGMAS = torch.tensor([0.002, 0.1, 0.5, 1.0, 7.0, 80.0], dtype=torch.float64)


class Oracle(torch.nn.Module):
    """A 'network' that returns a fixed target and records what it was called with."""

    def __init__(self, target):
        super().__init__()
        self.target = target

    def forward(self, x_in, c_noise, **cond):
        self.x_in, self.c_noise, self.cond = x_in, c_noise, cond
        return self.target


def noisy_batch(sigma_data=0.5, seed=0):
    g = torch.Generator().manual_seed(seed)
    x0 = sigma_data * torch.randn(len(SIGMAS), 3, 4, 4, generator=g, dtype=torch.float64)
    eps = torch.randn(x0.shape, generator=g, dtype=torch.float64)
    s = SIGMAS.reshape(-1, 1, 1, 1)
    return x0, eps, s, x0 + s * eps


@pytest.mark.parametrize("sigma_data", [0.5, 1.3])
def test_edm_ideal_output_gives_x0(sigma_data):
    x0, eps, s, x = noisy_batch(sigma_data)
    # EDM eq. 8 target F = (x0 - c_skip x) / c_out, worked out for x = x0 + s eps
    target = (s * x0 - sigma_data**2 * eps) / (sigma_data * (s**2 + sigma_data**2).sqrt())
    net = Oracle(target)
    D = EDMPrecond(net, sigma_data=sigma_data)(x, SIGMAS)
    torch.testing.assert_close(D, x0, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(net.c_noise, SIGMAS.log() / 4)
    torch.testing.assert_close(net.x_in, x / (s**2 + sigma_data**2).sqrt())


def test_edm_network_input_has_unit_variance():
    sigma_data, sigma = 0.5, 3.0
    x0 = sigma_data * torch.randn(20000, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    x = x0 + sigma * torch.randn(x0.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    net = Oracle(torch.zeros_like(x))
    EDMPrecond(net, sigma_data=sigma_data)(x, sigma)
    assert net.x_in.std().item() == pytest.approx(1.0, abs=0.01)


def test_eps_prediction_matches_ddpm():
    """The net sees DDPM's x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps and its integer timestep t."""
    vp = VPSchedule.linear()
    t = torch.tensor([0, 10, 250, 999])
    sigma = vp.sigmas[t]
    g = torch.Generator().manual_seed(3)
    x0, eps = torch.randn(4, 5, generator=g, dtype=torch.float64), torch.randn(4, 5, generator=g, dtype=torch.float64)
    abar = vp.alphas_cumprod[t].unsqueeze(1)
    net = Oracle(eps)
    D = VPEpsPrecond(net, vp)(x0 + sigma.unsqueeze(1) * eps, sigma)
    torch.testing.assert_close(D, x0)
    torch.testing.assert_close(net.x_in, abar.sqrt() * x0 + (1 - abar).sqrt() * eps)
    torch.testing.assert_close(net.c_noise, t.double(), atol=1e-6, rtol=0)


@pytest.mark.parametrize("sigma_data", [1.0, 0.5])
def test_v_prediction_ideal_output_gives_x0(sigma_data):
    x0, eps, s, x = noisy_batch(sigma_data, seed=4)
    alpha, sigma_t = 1 / (1 + (s / sigma_data) ** 2).sqrt(), (s / sigma_data) / (1 + (s / sigma_data) ** 2).sqrt()
    v = alpha * eps - sigma_t * x0 / sigma_data  # Salimans & Ho: v = alpha_t eps - sigma_t x, for x0 / sigma_data
    net = Oracle(v)
    D = VPredPrecond(net, sigma_data=sigma_data)(x, SIGMAS)
    torch.testing.assert_close(D, x0, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(net.c_noise, SIGMAS.log() / 4)


def test_v_prediction_with_vp_schedule_uses_timesteps():
    vp = VPSchedule.cosine()
    precond = VPredPrecond(Oracle(torch.zeros(2, 3)), vp_schedule=vp)
    precond(torch.zeros(2, 3), vp.sigmas[[5, 500]])
    torch.testing.assert_close(precond.net.c_noise, torch.tensor([5.0, 500.0]), atol=1e-4, rtol=0)
    assert (precond.sigma_min, precond.sigma_max) == (vp.sigma_min, vp.sigma_max)


@pytest.mark.parametrize("sigma", [0.7, torch.tensor(0.7), torch.full((4,), 0.7), torch.tensor([0.7])])
def test_sigma_forms_are_equivalent(sigma):
    x = torch.randn(4, 2, generator=torch.Generator().manual_seed(5))
    net = Oracle(torch.ones(4, 2))
    D = EDMPrecond(net)(x, sigma)
    reference = EDMPrecond(Oracle(torch.ones(4, 2)))(x, torch.full((4,), 0.7))
    torch.testing.assert_close(D, reference)
    assert net.c_noise.shape == (4,)


def test_condition_is_passed_through():
    net = Oracle(torch.zeros(2, 3))
    labels = torch.tensor([1, 2])
    EDMPrecond(net)(torch.zeros(2, 3), 1.0, class_labels=labels)
    assert net.cond["class_labels"] is labels


def test_bf16_input_uses_float32_coefficients():
    x = torch.randn(3, 8, generator=torch.Generator().manual_seed(6))
    net = Oracle(torch.randn(3, 8, generator=torch.Generator().manual_seed(7)))
    D16 = EDMPrecond(net)(x.bfloat16(), 2.5)
    assert D16.dtype == torch.bfloat16 and net.x_in.dtype == torch.bfloat16 and net.c_noise.dtype == torch.float32
    D32 = EDMPrecond(net)(x.bfloat16().float(), 2.5)
    torch.testing.assert_close(D16.float(), D32, rtol=1e-2, atol=1e-2)


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match=r"shape \[4\]"):
        EDMPrecond(Oracle(torch.zeros(4, 2)))(torch.zeros(4, 2), torch.ones(3))
    with pytest.raises(ValueError, match="shaped like its input"):
        EDMPrecond(Oracle(torch.zeros(4, 3)))(torch.zeros(4, 2), 1.0)
    with pytest.raises(TypeError, match="VPSchedule"):
        VPEpsPrecond(Oracle(None), {"kind": "linear"})
    with pytest.raises(ValueError, match="sigma_data"):
        EDMPrecond(Oracle(None), sigma_data=0)


def test_batch_sigma_promotes_to_float32_or_wider():
    assert batch_sigma(1.0, torch.zeros(2, dtype=torch.float16)).dtype == torch.float32
    assert batch_sigma(1.0, torch.zeros(2, dtype=torch.float64)).dtype == torch.float64
    assert EDMPrecond(Oracle(None)).sigma_max == math.inf


class TupleOracle(Oracle):
    """A raw network that also returns auxiliary outputs from the same call: (F, *aux)."""

    def __init__(self, target, *aux):
        super().__init__(target)
        self.aux = aux

    def forward(self, x_in, c_noise, **cond):
        return super().forward(x_in, c_noise, **cond), *self.aux


@pytest.mark.parametrize(
    "make",
    [lambda net: EDMPrecond(net, sigma_data=0.5), lambda net: VPEpsPrecond(net, VPSchedule.linear()),
     lambda net: VPredPrecond(net, sigma_data=0.7)],
    ids=["edm", "vp_eps", "v"],
)
def test_auxiliary_outputs_pass_through_and_D_is_unchanged(make):
    sigma = VPSchedule.linear().sigmas[[3, 100, 700, 999]]
    x = torch.randn(4, 5, generator=torch.Generator().manual_seed(8), dtype=torch.float64) * 3
    F = torch.randn(4, 5, generator=torch.Generator().manual_seed(9), dtype=torch.float64)
    logits, extra = torch.randn(4, 2, 7), {"anything": 1}
    plain = make(Oracle(F))(x, sigma, class_labels=torch.tensor([0, 1, 2, 3]))
    out = make(TupleOracle(F, logits, extra))(x, sigma, class_labels=torch.tensor([0, 1, 2, 3]))
    assert isinstance(plain, torch.Tensor) and isinstance(out, tuple) and len(out) == 3
    assert torch.equal(out[0], plain)
    assert out[1] is logits and out[2] is extra
    single = make(TupleOracle(F))(x, sigma)  # a 1-tuple gives a 1-tuple
    assert isinstance(single, tuple) and len(single) == 1 and torch.equal(single[0], plain)
    with pytest.raises(ValueError, match="first entry"):
        make(TupleOracle(F[:, :3], logits))(x, sigma)


def test_tabular_denoiser_is_the_engine_precond_with_logits():
    from noisecraft.tabular.diffusion import TabularDenoiser

    class JointNet(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = torch.nn.Linear(3, 3)

        def forward(self, x_in, c_noise, *, tokens, given, x_given):
            return self.linear(x_in) * c_noise[:, None], tokens.float() + given.sum()

    net = JointNet()
    denoiser = TabularDenoiser(net, sigma_data=1.0)
    assert all(key.startswith("precond.net.") for key in denoiser.state_dict())  # saved folders keep loading
    x, sigma, tokens = torch.randn(2, 3), torch.tensor([0.3, 5.0]), torch.tensor([[1, 2], [0, 4]])
    D, logits = denoiser(x, sigma, tokens=tokens, given=torch.zeros(2, 3), x_given=torch.zeros(2, 3))
    c_skip, c_out, c_in = 1 / (1 + sigma**2), sigma / (1 + sigma**2).sqrt(), (1 + sigma**2).rsqrt()
    expected = c_skip[:, None] * x + c_out[:, None] * net.linear(c_in[:, None] * x) * (sigma.log() / 4)[:, None]
    torch.testing.assert_close(D, expected)
    assert torch.equal(logits, tokens.float())
