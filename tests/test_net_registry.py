"""Tests for noisecraft.nets.registry: networks built by name from plain config dicts."""

import json
from dataclasses import asdict, dataclass

import pytest
import torch
from torch import nn

from noisecraft.nets import (UNet2D, UNetConfig, build_network, network_config, network_names, register_network,
                             registry, unet_config)


def shapes_of(model: nn.Module) -> dict[str, tuple[int, ...]]:
    return {name: tuple(parameter.shape) for name, parameter in model.named_parameters()}


def test_unet2d_by_name_matches_the_class():
    config = unet_config("tiny", in_channels=1, num_classes=3).to_dict()
    config = json.loads(json.dumps(config))  # as read back from config.json
    built = build_network("unet2d", config)
    assert isinstance(built, UNet2D)
    assert shapes_of(built) == shapes_of(UNet2D(UNetConfig.from_dict(config)))


def test_network_config_uses_the_unet_preset_rules():
    assert "unet2d" in network_names()
    assert network_config("unet2d", "small", resolution=32) == unet_config("small", resolution=32).to_dict()
    with pytest.raises(ValueError, match=r"unknown preset 'huge' for network 'unet2d'; valid presets are .*'tiny'"):
        network_config("unet2d", "huge")


@dataclass
class DummyConfig:
    width: int = 4

    def to_dict(self) -> dict:
        return asdict(self)


class DummyNet(nn.Module):
    def __init__(self, config: DummyConfig):
        super().__init__()
        self.linear = nn.Linear(config.width, config.width)


@pytest.fixture
def with_dummy(monkeypatch):
    """Register "dummy" in a copy of the table, so the test leaves the real registry untouched."""
    monkeypatch.setattr(registry, "_NETWORKS", dict(registry._NETWORKS))
    register_network("dummy", DummyConfig, DummyNet, {"narrow": {"width": 2}})


def test_a_second_network_is_built_by_name(with_dummy):
    assert {"dummy", "sequence_transformer", "unet2d"} <= set(network_names()) and network_names() == sorted(network_names())
    assert network_config("dummy", "narrow", width=3) == {"width": 3}
    assert network_config("dummy", "narrow") == {"width": 2}
    built = build_network("dummy", {"width": 3})
    assert isinstance(built, DummyNet) and built.linear.weight.shape == torch.Size([3, 3])
    with pytest.raises(ValueError, match="network 'dummy' is already registered"):
        register_network("dummy", DummyConfig, DummyNet, {})


def test_errors_name_the_problem(with_dummy):
    with pytest.raises(ValueError, match="^unknown network 'unet'; known networks are dummy, .*sequence_transformer.*unet2d$"):
        build_network("unet", {})
    with pytest.raises(ValueError, match="^unknown network 'unet'; known networks are dummy, .*sequence_transformer.*unet2d$"):
        network_config("unet", "tiny")
    with pytest.raises(ValueError, match=r"unknown UNetConfig keys \['channel_multiplier'\]"):
        build_network("unet2d", {"channel_multiplier": [1, 2]})
    with pytest.raises(ValueError, match=r"unknown DummyConfig keys \['depth'\]"):
        network_config("dummy", "narrow", depth=2)
    with pytest.raises(TypeError, match="must be a dataclass with to_dict"):
        register_network("plain", dict, DummyNet, {})
