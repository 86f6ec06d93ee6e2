from pathlib import Path

import pytest
import torch

from noisecraft.nets.registry import build_network, network_config
from noisecraft.nets.spacetime import (SpaceTimeUNet, SpaceTimeUNetConfig, from_image_model, image_unet_config,
                                       load_image_weights)
from noisecraft.nets.unet import UNet2D, unet_config

SHIPPED = Path(__file__).resolve().parents[1] / "noisecraft" / "assets" / "shapes_t2i"


def _random_image_net(**overrides) -> UNet2D:
    """A tiny UNet2D with every weight random (a fresh one outputs exactly 0: its output conv is zero-initialised)."""
    torch.manual_seed(0)
    net = UNet2D(unet_config("tiny", **overrides))
    with torch.no_grad():
        for parameter in net.parameters():
            parameter.copy_(torch.randn_like(parameter) * 0.3)
    return net.eval()


def _video_from(image: UNet2D) -> SpaceTimeUNet:
    video = SpaceTimeUNet(SpaceTimeUNetConfig.from_image_config(image.config))
    prefixed = {f"denoiser.net.{key}": value for key, value in image.state_dict().items()}  # a checkpoint's keys
    return load_image_weights(video, prefixed).eval()


def _frame_by_frame(image: UNet2D, x: torch.Tensor, c_noise: torch.Tensor, **cond) -> torch.Tensor:
    frames = [image(x[:, :, t], c_noise, **cond) for t in range(x.shape[2])]
    return torch.stack(frames, dim=2)


def test_shapes_and_registry():
    config = network_config("spacetime_unet", "tiny", num_classes=3)
    net = build_network("spacetime_unet", config)
    assert isinstance(net, SpaceTimeUNet) and len(net.temporal_attentions) > 0
    x = torch.randn(2, 3, 4, 16, 16)
    out = net(x, torch.rand(2), class_labels=torch.tensor([0, 3]))
    assert out.shape == x.shape
    assert SpaceTimeUNetConfig.from_dict(config).to_dict() == config
    with pytest.raises(ValueError):
        net(torch.randn(2, 3, 16, 16), torch.rand(2))
    with pytest.raises(ValueError):
        network_config("spacetime_unet", "tiny", temporal_kernel=2)


@pytest.mark.parametrize("conditioning", ["none", "class", "text"])
def test_equals_image_net_frame_by_frame_at_init(conditioning):
    overrides = {"class": {"num_classes": 3}, "text": {"context_dim": 6}}.get(conditioning, {})
    image = _random_image_net(**overrides)
    video = _video_from(image)
    torch.manual_seed(1)
    x, c_noise = torch.randn(2, 3, 5, 16, 16), torch.randn(2)
    cond = {}
    if conditioning == "class":
        cond = {"class_labels": torch.tensor([1, 3])}
    if conditioning == "text":
        cond = {"context": torch.randn(2, 4, 6), "context_mask": torch.tensor([[True, True, False, False]] * 2)}
    with torch.no_grad():
        expected = _frame_by_frame(image, x, c_noise, **cond)
        got = video(x, c_noise, **cond)
    assert expected.abs().max() > 0.1  # a real, non-trivial output
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_one_frame_equals_image_net_even_after_training_the_temporal_layers():
    image = _random_image_net(context_dim=6)
    video = _video_from(image)
    with torch.no_grad():
        for parameter in video.temporal_parameters():
            parameter.copy_(torch.randn_like(parameter))
    x, c_noise, context = torch.randn(3, 3, 1, 16, 16), torch.randn(3), torch.randn(3, 2, 6)
    with torch.no_grad():
        torch.testing.assert_close(video(x, c_noise, context=context)[:, :, 0],
                                   image(x[:, :, 0], c_noise, context=context), rtol=1e-5, atol=1e-5)
        clip = torch.randn(3, 3, 4, 16, 16)  # with several frames the (now non-zero) temporal layers do act
        assert not torch.allclose(video(clip, c_noise, context=context),
                                  _frame_by_frame(image, clip, c_noise, context=context), atol=1e-3)


def test_temporal_layers_receive_gradients():
    video = _video_from(_random_image_net())
    video.train()
    out = video(torch.randn(2, 3, 4, 16, 16), torch.randn(2))
    out.square().mean().backward()
    for name, module in [("conv", video.temporal_convs[0].conv), *[
            (f"attention {key}", attention.proj_out) for key, attention in video.temporal_attentions.items()]]:
        assert module.weight.grad is not None and module.weight.grad.abs().sum() > 0, name


def test_from_shipped_image_model():
    if not (SHIPPED / "model.safetensors").is_file():
        pytest.skip("shipped model not present")
    assert image_unet_config(SHIPPED)["context_dim"] == 384
    video = from_image_model(SHIPPED).eval()
    image = video.spatial
    torch.manual_seed(0)
    x, c_noise, context = torch.randn(1, 3, 2, 32, 32), torch.tensor([0.3]), torch.randn(1, 3, 384)
    with torch.no_grad():
        expected = _frame_by_frame(image, x, c_noise, context=context)
        torch.testing.assert_close(video(x, c_noise, context=context), expected, rtol=1e-4, atol=1e-4)
