"""Classifier-free guidance and composition: exact against separate evaluations, one batched call each."""

import pytest
import torch

from noisecraft.diffusion.guidance import composed_denoiser, drop_condition, guided_denoiser

NULL = 5  # the "no label" class


class ToyDenoiser:
    """D(x, sigma, class_labels, context) with a distinct answer per label; counts calls and batch sizes."""

    def __init__(self):
        self.batch_sizes = []
        self.embedding = torch.randn(NULL + 1, 3, generator=torch.Generator().manual_seed(0))

    def __call__(self, x, sigma, class_labels, context):
        self.batch_sizes.append(x.shape[0])
        sigma = torch.as_tensor(sigma).reshape(-1, 1)
        return x / (1 + sigma**2) + self.embedding[class_labels] + context.sum(1)


def inputs(batch_size=4, seed=1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch_size, 3, generator=g)
    cond = {"class_labels": torch.randint(0, NULL, (batch_size,), generator=g),
            "context": torch.randn(batch_size, 2, 3, generator=g)}
    uncond = {"class_labels": torch.tensor(NULL), "context": torch.zeros(1, 2, 3)}  # broadcast over the batch
    return x, cond, uncond


def plain(denoiser, x, sigma, cond):
    return denoiser(x, sigma, cond["class_labels"].expand(x.shape[0]), cond["context"].expand(x.shape[0], 2, 3))


@pytest.mark.parametrize("scale", [0.0, 1.0, 3.5])
def test_guidance_is_the_cfg_formula_in_one_batched_call(scale):
    denoiser = ToyDenoiser()
    x, cond, uncond = inputs()
    sigma = torch.tensor([0.5, 1.0, 2.0, 4.0])
    guided = guided_denoiser(denoiser, cond, uncond, scale)(x, sigma)
    assert denoiser.batch_sizes == [8]
    d_c, d_u = plain(denoiser, x, sigma, cond), plain(denoiser, x, sigma, uncond)
    torch.testing.assert_close(guided, d_u + scale * (d_c - d_u))
    if scale == 1.0:
        torch.testing.assert_close(guided, d_c)
    if scale == 0.0:
        torch.testing.assert_close(guided, d_u)


def test_composition_with_negative_weight():
    denoiser = ToyDenoiser()
    x, cond, uncond = inputs()
    other = {"class_labels": torch.tensor([3]), "context": torch.ones(4, 2, 3)}
    composed = composed_denoiser(denoiser, [cond, other], [2.0, -0.5], uncond)(x, 1.5)
    assert denoiser.batch_sizes == [12]
    d_u, d_1, d_2 = (plain(denoiser, x, 1.5, c) for c in (uncond, cond, other))
    torch.testing.assert_close(composed, d_u + 2.0 * (d_1 - d_u) - 0.5 * (d_2 - d_u))


def test_guidance_interval_switches_per_example():
    denoiser = ToyDenoiser()
    x, cond, uncond = inputs()
    guided = guided_denoiser(denoiser, cond, uncond, 4.0, sigma_interval=(0.8, 3.0))
    sigma = torch.tensor([0.5, 1.0, 2.0, 4.0])
    inside = torch.tensor([False, True, True, False])[:, None]
    full = guided_denoiser(denoiser, cond, uncond, 4.0)(x, sigma)
    torch.testing.assert_close(guided(x, sigma), torch.where(inside, full, plain(denoiser, x, sigma, cond)))
    denoiser.batch_sizes.clear()
    torch.testing.assert_close(guided(x, 10.0), plain(denoiser, x, 10.0, cond))
    assert denoiser.batch_sizes[0] == 4  # outside the interval: no unconditional evaluation


def test_guidance_input_errors():
    denoiser = ToyDenoiser()
    x, cond, uncond = inputs()
    with pytest.raises(ValueError, match="same keys"):
        guided_denoiser(denoiser, {"class_labels": cond["class_labels"]}, uncond, 2.0)
    with pytest.raises(ValueError, match="one weight per condition"):
        composed_denoiser(denoiser, [cond], [1.0, 2.0], uncond)
    with pytest.raises(ValueError, match="batch size 3"):
        guided_denoiser(denoiser, {**cond, "class_labels": torch.zeros(3, dtype=torch.long)}, uncond, 2.0)(x, 1.0)
    with pytest.raises(ValueError, match="sigma_interval"):
        guided_denoiser(denoiser, cond, uncond, 2.0, sigma_interval=(3.0, 1.0))


def test_drop_condition_rate_and_shared_draw():
    n = 8000
    cond = {"class_labels": torch.arange(n) % NULL, "context": torch.ones(n, 2, 3),
            "context_mask": torch.ones(n, 2, dtype=torch.bool)}
    null = {"class_labels": torch.tensor(NULL), "context": torch.zeros(2, 3), "context_mask": torch.zeros(1, 2).bool()}
    dropped = drop_condition(cond, null, 0.25, torch.Generator().manual_seed(2))
    is_null = dropped["class_labels"] == NULL
    assert is_null.float().mean().item() == pytest.approx(0.25, abs=0.02)
    # one draw per example for all keys: context and its mask are dropped with the label
    assert torch.equal(dropped["context"].sum((1, 2)) == 0, is_null)
    assert torch.equal(~dropped["context_mask"].any(1), is_null)
    assert torch.equal(dropped["class_labels"][~is_null], cond["class_labels"][~is_null])


def test_drop_condition_extremes_and_errors():
    cond = {"class_labels": torch.tensor([1, 2, 3])}
    null = {"class_labels": torch.tensor(NULL)}
    assert torch.equal(drop_condition(cond, null, 0.0)["class_labels"], cond["class_labels"])
    assert (drop_condition(cond, null, 1.0)["class_labels"] == NULL).all()
    with pytest.raises(ValueError, match="null value for 'class_labels'"):
        drop_condition(cond, {"class_labels": torch.tensor([1, 2])}, 0.5)
    with pytest.raises(ValueError, match="give a null value"):
        drop_condition(cond, {}, 0.5)
    with pytest.raises(ValueError, match="prob"):
        drop_condition(cond, null, 1.5)
