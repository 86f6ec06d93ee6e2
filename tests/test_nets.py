"""Tests for noisecraft.nets: the 2-D diffusion U-Net, its config and presets."""

import json

import pytest
import torch
from torch import nn

from noisecraft.nets import PRESETS, UNet2D, UNetConfig, count_parameters, unet_config
from noisecraft.nets.embeddings import FourierEmbedding, PositionalEmbedding

BATCH, SIZE = 2, 8


def perturb_zero_inits(model: nn.Module, *, std: float = 0.1, seed: int = 0) -> nn.Module:
    """Give every all-zero parameter (zero-initialised convs, norm biases) random values, so that every
    path through the network affects the output."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            if not parameter.any():
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * std)
    return model


def build(**overrides) -> UNet2D:
    torch.manual_seed(0)
    return perturb_zero_inits(UNet2D(unet_config("tiny", **overrides))).eval()


def inputs(channels: int = 3, size: int = SIZE, seed: int = 1):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(BATCH, channels, size, size, generator=generator)
    c_noise = torch.tensor([-0.5, 0.7])
    return x, c_noise


@pytest.mark.parametrize("size", [8, 16])
def test_output_shape_and_zero_output_at_init(size):
    model = UNet2D(unet_config("tiny", in_channels=1, out_channels=2))
    x, c_noise = inputs(channels=1, size=size)
    out = model(x, c_noise)
    assert out.shape == (BATCH, 2, size, size)
    # The output conv is zero-initialised: an untrained network predicts exactly 0.
    assert torch.count_nonzero(out) == 0


def test_scalar_c_noise_is_broadcast_and_noise_level_matters():
    model = build()
    x, _ = inputs()
    same = model(x, torch.tensor(0.3))
    assert torch.allclose(same, model(x, torch.full((BATCH,), 0.3)))
    assert not torch.allclose(same, model(x, torch.full((BATCH,), -1.0)), atol=1e-4)


def test_class_conditioning_changes_output_and_none_means_no_label():
    num_classes = 5
    model = build(num_classes=num_classes)
    x, c_noise = inputs()
    out_a = model(x, c_noise, class_labels=torch.tensor([0, 1]))
    out_b = model(x, c_noise, class_labels=torch.tensor([2, 3]))
    assert (out_a - out_b).abs().amax(dim=(1, 2, 3)).min() > 1e-4
    no_label = model(x, c_noise, class_labels=torch.full((BATCH,), num_classes))
    torch.testing.assert_close(model(x, c_noise), no_label)


def context_inputs(context_dim: int = 6, tokens: int = 5, seed: int = 2):
    generator = torch.Generator().manual_seed(seed)
    context = torch.randn(BATCH, tokens, context_dim, generator=generator)
    mask = torch.ones(BATCH, tokens, dtype=torch.bool)
    mask[0, 3:] = False  # example 0 has two padding tokens
    return context, mask


def test_cross_attention_uses_context_and_ignores_masked_tokens():
    model = build(context_dim=6)
    x, c_noise = inputs()
    context, mask = context_inputs()
    out = model(x, c_noise, context=context, context_mask=mask)

    padded = context.clone()
    padded[0, 3:] = 100.0 * torch.randn(2, 6)  # change only masked tokens
    torch.testing.assert_close(model(x, c_noise, context=padded, context_mask=mask), out, rtol=1e-5, atol=1e-5)

    changed = context.clone()
    changed[:, 0] = torch.randn(BATCH, 6)  # change a real token of every example
    diff = (model(x, c_noise, context=changed, context_mask=mask) - out).abs().amax(dim=(1, 2, 3))
    assert diff.min() > 1e-4


def test_fully_masked_context_is_finite_and_equals_no_context():
    model = build(context_dim=6)
    x, c_noise = inputs()
    context, _ = context_inputs()
    masked = model(x, c_noise, context=context, context_mask=torch.zeros(BATCH, 5, dtype=torch.bool))
    assert torch.isfinite(masked).all()
    # Both attend only to the learned null token.
    torch.testing.assert_close(masked, model(x, c_noise), rtol=1e-5, atol=1e-5)


def test_gradient_reaches_every_parameter():
    model = build(num_classes=3, context_dim=6, noise_embedding="fourier").train()
    x, c_noise = inputs()
    context, mask = context_inputs()
    out = model(x, c_noise, class_labels=torch.tensor([0, 3]), context=context, context_mask=mask)
    out.square().mean().backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None, name
        assert torch.isfinite(parameter.grad).all(), name
        assert parameter.grad.abs().sum() > 0, name


def test_bfloat16_autocast_forward_is_finite_and_close():
    model = build(num_classes=3, context_dim=6)
    x, c_noise = inputs()
    context, mask = context_inputs()
    cond = dict(class_labels=torch.tensor([1, 2]), context=context, context_mask=mask)
    reference = model(x, c_noise, **cond)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = model(x, c_noise, **cond)
    assert low.shape == reference.shape and torch.isfinite(low).all()
    assert (low.float() - reference).abs().max() < 0.1 * reference.abs().max()


def test_traces_as_one_graph_with_torch_compile():
    model = build(num_classes=3, context_dim=6)
    x, c_noise = inputs()
    context, mask = context_inputs()
    cond = dict(class_labels=torch.tensor([1, 2]), context=context, context_mask=mask)
    # fullgraph=True fails on any graph break (e.g. Python branching on tensor values); the eager backend
    # checks tracing without paying for code generation.
    compiled = torch.compile(model, backend="eager", fullgraph=True)
    torch.testing.assert_close(compiled(x, c_noise, **cond), model(x, c_noise, **cond))


def call_with(model, **changes):
    x, c_noise = inputs()
    args = {"x": x, "c_noise": c_noise, **changes}
    return model(**args)


@pytest.mark.parametrize(
    ("changes", "error", "message"),
    [
        (dict(x=torch.randn(BATCH, 1, SIZE, SIZE)), ValueError, "in_channels=1"),
        (dict(x=torch.randn(BATCH, 3, 9, 8)), ValueError, "not divisible by 2"),
        (dict(x=torch.randn(3, SIZE, SIZE)), ValueError, r"\[B, C, H, W\]"),
        (dict(c_noise=torch.zeros(3)), ValueError, "c_noise must have shape"),
        (dict(c_noise=0.5), TypeError, "c_noise must be a tensor"),
        (dict(class_labels=torch.tensor([0, 4])), ValueError, r"\[0, 3\]"),
        (dict(class_labels=torch.tensor([-1, 0])), ValueError, r"\[0, 3\]"),
        (dict(class_labels=torch.tensor([0.0, 1.0])), ValueError, "integer tensor"),
        (dict(class_labels=torch.tensor([0])), ValueError, "shape"),
        (dict(context=torch.randn(BATCH, 4, 5)), ValueError, "context_dim=6"),
        (dict(context=torch.randn(BATCH, 4, 6), context_mask=torch.ones(BATCH, 4)), ValueError, "bool"),
        (dict(context_mask=torch.ones(BATCH, 4, dtype=torch.bool)), ValueError, "without context"),
    ],
)
def test_bad_inputs_raise_clear_errors(changes, error, message):
    model = UNet2D(unet_config("tiny", num_classes=3, context_dim=6))
    with pytest.raises(error, match=message):
        call_with(model, **changes)


def test_conditions_rejected_by_an_unconditional_model():
    model = UNet2D(unet_config("tiny"))
    with pytest.raises(ValueError, match="num_classes"):
        call_with(model, class_labels=torch.tensor([0, 0]))
    with pytest.raises(ValueError, match="context_dim"):
        call_with(model, context=torch.randn(BATCH, 4, 6))


def test_config_round_trips_through_json_and_rejects_unknown_keys():
    config = unet_config("small", in_channels=1, num_classes=10, context_dim=32, noise_embedding="fourier")
    data = json.loads(json.dumps(config.to_dict()))
    assert UNetConfig.from_dict(data) == config
    with pytest.raises(ValueError, match="unknown UNetConfig keys.*channel_multiplier"):
        UNetConfig.from_dict({**data, "channel_multiplier": [1, 2]})


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (dict(resolution=17), "not divisible"),
        (dict(attention_resolutions=(4,)), "never occur"),
        (dict(noise_embedding="sinusoidal"), "noise_embedding"),
        (dict(num_heads=3), "heads"),
        (dict(num_classes=-1), "num_classes"),
        (dict(dropout=1.0), "dropout"),
        (dict(channel_mult=()), "channel_mult"),
    ],
)
def test_invalid_configs_raise(overrides, message):
    with pytest.raises(ValueError, match=message):
        unet_config("tiny", **overrides)


def test_presets_build_with_expected_sizes():
    with pytest.raises(ValueError, match="valid presets are.*tiny"):
        unet_config("huge")
    counts = {name: count_parameters(UNet2D(unet_config(name))) for name in PRESETS}
    print("U-Net preset parameter counts:", counts)
    assert counts["tiny"] < 100_000
    assert 1_000_000 <= counts["small"] <= 3_000_000
    assert counts["base"] >= 35_000_000


def test_resolution_override_keeps_attention_at_the_same_level():
    assert unet_config("small").attention_resolutions == (8,)
    assert unet_config("small", resolution=32).attention_resolutions == (16,)
    assert unet_config("small", resolution=28, attention_resolutions=(7,)).attention_resolutions == (7,)


def test_fourier_frequencies_are_saved_with_the_model():
    torch.manual_seed(0)
    model = UNet2D(unet_config("tiny", noise_embedding="fourier"))
    torch.manual_seed(1)
    restored = UNet2D(unet_config("tiny", noise_embedding="fourier"))
    restored.load_state_dict(model.state_dict())
    torch.testing.assert_close(restored.noise_features.frequencies, model.noise_features.frequencies)


def test_embeddings_follow_their_formulas():
    c_noise = torch.tensor([0.0, 2.0])
    positional = PositionalEmbedding(4, max_positions=100)  # frequencies 1 and 1/10
    expected = torch.tensor([[1.0, 1.0, 0.0, 0.0], [torch.cos(torch.tensor(2.0)), torch.cos(torch.tensor(0.2)),
                                                     torch.sin(torch.tensor(2.0)), torch.sin(torch.tensor(0.2))]])
    torch.testing.assert_close(positional(c_noise), expected)
    fourier = FourierEmbedding(6, scale=16.0)
    features = fourier(c_noise)
    assert features.shape == (2, 6) and torch.allclose(features[0], torch.tensor([1.0, 1, 1, 0, 0, 0]))
    with pytest.raises(ValueError, match="even"):
        PositionalEmbedding(5)
