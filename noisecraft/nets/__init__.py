"""Image networks: a 2-D diffusion U-Net with class embedding and cross-attention, plus size presets."""

from .embeddings import FourierEmbedding, PositionalEmbedding
from .unet import PRESETS, UNet2D, UNetConfig, count_parameters, unet_config

__all__ = [
    "PRESETS",
    "FourierEmbedding",
    "PositionalEmbedding",
    "UNet2D",
    "UNetConfig",
    "count_parameters",
    "unet_config",
]
