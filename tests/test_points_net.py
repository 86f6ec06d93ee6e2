"""The point transformer (noisecraft.nets.points): permutation equivariance, conditions, registry."""

import pytest
import torch

from noisecraft.nets.registry import build_network, network_config


def _net(**overrides):
    torch.manual_seed(0)
    net = build_network("point_transformer", network_config("point_transformer", "tiny", **overrides))
    with torch.no_grad():  # zero-initialised output layers would make the test trivial
        for parameter in net.parameters():
            parameter.normal_(0, 0.2)
    return net.eval()


@pytest.mark.parametrize("channels,mixer", [(3, "attention"), (6, "attention"), (3, "pool")])
def test_permuting_the_points_permutes_the_output(channels, mixer):
    net = _net(in_channels=channels, num_classes=3, context_dim=8, depth=2, mixer=mixer)
    x, c_noise = torch.randn(2, 37, channels), torch.randn(2)
    cond = {"class_labels": torch.tensor([1, 3]), "context": torch.randn(2, 5, 8),
            "context_mask": torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], dtype=torch.bool)}
    perm = torch.randperm(37, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        out, out_perm = net(x, c_noise, **cond), net(x[:, perm], c_noise, **cond)
    assert out.shape == x.shape
    assert torch.allclose(out[:, perm], out_perm, atol=1e-5, rtol=1e-5)
    assert out.abs().max() > 1e-3  # not trivially zero


def test_padding_tokens_and_a_fully_masked_context_are_handled():
    net = _net(context_dim=4)
    x, c_noise = torch.randn(1, 10, 3), torch.zeros(1)
    context = torch.randn(1, 3, 4)
    with torch.no_grad():
        short = net(x, c_noise, context=context[:, :2], context_mask=torch.ones(1, 2, dtype=torch.bool))
        padded = net(x, c_noise, context=torch.cat([context[:, :2], torch.randn(1, 1, 4)], 1),
                     context_mask=torch.tensor([[True, True, False]]))
        null = net(x, c_noise, context=torch.zeros(1, 3, 4), context_mask=torch.zeros(1, 3, dtype=torch.bool))
        no_context = net(x, c_noise)
    assert torch.allclose(short, padded, atol=1e-5)
    assert torch.isfinite(null).all() and torch.isfinite(no_context).all()


def test_a_new_network_predicts_zero_and_bad_shapes_are_named():
    net = build_network("point_transformer", network_config("point_transformer", "tiny"))
    assert net(torch.randn(2, 5, 3), torch.zeros(2)).abs().max() == 0
    with pytest.raises(ValueError, match="clouds"):
        net(torch.randn(2, 5, 4), torch.zeros(2))
    with pytest.raises(ValueError, match="mixer"):
        network_config("point_transformer", "tiny", mixer="conv")
    with pytest.raises(ValueError, match="divisible"):
        network_config("point_transformer", "tiny", dim=30, heads=4)
