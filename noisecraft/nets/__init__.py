"""Diffusion networks by name (registry.py) and the built-in 2-D U-Net with its size presets (unet.py)."""

from .embeddings import FourierEmbedding, PositionalEmbedding
from .registry import build_network, network_config, network_names, register_network
from .unet import PRESETS, UNet2D, UNetConfig, count_parameters, unet_config

__all__ = [
    "PRESETS",
    "FourierEmbedding",
    "PositionalEmbedding",
    "UNet2D",
    "UNetConfig",
    "build_network",
    "count_parameters",
    "network_config",
    "network_names",
    "register_network",
    "unet_config",
]
