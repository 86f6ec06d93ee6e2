"""nelbo() against exact answers: with the exact denoiser the MDLM NELBO equals the entropy (linear schedule over
[0, 1]: every unmasking order's chain rule sums to H(X)); a wrong denoiser pays more."""

import math

import pytest
import torch

from noisecraft.sequence import SequenceDiffusionModel, make_sequence_spec, nelbo
from test_sequence_sampling import P_IID, V, IIDNet, JointNet, configs, entropy, exact_model, random_joint

LN2 = math.log(2)


def sample_joint(joint, n, seed):
    index = torch.multinomial(joint.reshape(-1), n, replacement=True, generator=torch.Generator().manual_seed(seed))
    return configs(joint.ndim)[index]


def assert_matches_entropy(result, nats_per_token):
    bits, se = result["bits_per_token"], result["stderr_bits_per_token"]
    assert 0 < se < 0.05
    assert abs(bits - nats_per_token / LN2) <= 3 * se, (bits, nats_per_token / LN2, se)
    assert bits >= nats_per_token / LN2 - 3 * se  # a bound: never below the entropy beyond the noise


@pytest.mark.parametrize("schedule", ["linear", "loglinear", "cosine"])
def test_iid_exact_denoiser_nelbo_is_the_entropy(schedule):
    g = torch.Generator().manual_seed(0)
    tokens = torch.multinomial(P_IID, 2000 * 4, replacement=True, generator=g).reshape(2000, 4)
    result = nelbo(exact_model(IIDNet(P_IID[None]), 4, 4, schedule), tokens, num_samples=2, batch_size=1000,
                   generator=g)
    assert result["tokens"] == 8000 and result["num_samples"] == 2 and result["sequences"] == 2000
    assert result["nats_per_token"] == pytest.approx(result["bits_per_token"] * LN2)
    # the NELBO (masking probability integrated from 0 to 1) of the exact denoiser is H, whatever the schedule
    assert_matches_entropy(result, entropy(P_IID))


def test_joint_exact_denoiser_nelbo_is_the_entropy_and_a_wrong_one_pays_more():
    joint = random_joint(seed=20)
    tokens = sample_joint(joint, 4000, seed=21)
    exact = nelbo(exact_model(JointNet(joint), V, 3, "linear"), tokens, num_samples=4, batch_size=4000,
                  generator=torch.Generator().manual_seed(22))
    assert_matches_entropy(exact, entropy(joint) / 3)
    # the product of the marginals ignores the dependence: its NELBO is sum_l H(X_l) > H(X)
    marginals = [joint.sum(dim=[d for d in range(3) if d != l]) for l in range(3)]
    product = marginals[0][:, None, None] * marginals[1][None, :, None] * marginals[2][None, None, :]
    wrong = nelbo(exact_model(JointNet(product), V, 3, "linear"), tokens, num_samples=4, batch_size=4000,
                  generator=torch.Generator().manual_seed(22))
    gap = (sum(entropy(m) for m in marginals) - entropy(joint)) / 3 / LN2
    assert gap > 0.1 and wrong["bits_per_token"] > exact["bits_per_token"] + gap / 2 > exact["bits_per_token"] + \
        5 * exact["stderr_bits_per_token"]


def test_same_generator_same_estimate_and_mc_stderr():
    joint = random_joint(seed=23)
    tokens = sample_joint(joint, 300, seed=24)
    model = exact_model(JointNet(joint), V, 3, "loglinear")
    a, b = (nelbo(model, tokens, num_samples=3, batch_size=128) for _ in range(2))  # default generator: seeded 0
    assert a == b and 0 < a["stderr_mc_bits_per_token"] < 0.2
    single = nelbo(model, tokens[:1], num_samples=8)
    assert single["stderr_bits_per_token"] == single["stderr_mc_bits_per_token"]


def test_padding_is_not_scored_and_the_network_path_works():
    """A fresh sequence transformer predicts uniformly: every scored token costs log V, so NELBO = log V per token,
    exactly (the estimator's weight T / m times m masked tokens: no Monte Carlo noise at all)."""
    spec = make_sequence_spec("text", vocab_size=7, max_length=8)
    model = SequenceDiffusionModel(spec).eval()
    g = torch.Generator().manual_seed(25)
    tokens = torch.randint(0, 7, (64, 8), generator=g)
    padding_mask = torch.arange(8) < torch.randint(1, 9, (64, 1), generator=g)
    result = nelbo(model, tokens, num_samples=2, padding_mask=padding_mask, generator=g, batch_size=32)
    assert result["tokens"] == int(padding_mask.sum())
    assert result["bits_per_token"] == pytest.approx(math.log2(7), rel=1e-6)
    assert result["stderr_bits_per_token"] < 1e-6 and result["stderr_mc_bits_per_token"] < 1e-6
    with pytest.raises(ValueError, match="every position is padding"):
        nelbo(model, tokens, padding_mask=torch.zeros_like(padding_mask))
    with pytest.raises(ValueError, match="no mask"):
        nelbo(model, torch.full((2, 8), 7))
