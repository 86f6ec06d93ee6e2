"""Diffusion networks by name (registry.py), the built-in 2-D U-Net with its size presets (unet.py) and the
bidirectional sequence transformer of masked diffusion (transformer.py)."""

from .embeddings import FourierEmbedding, PositionalEmbedding
from .registry import build_network, network_config, network_names, register_network
from .transformer import PRESETS as TRANSFORMER_PRESETS
from .transformer import SequenceTransformer, SequenceTransformerConfig, transformer_config
from .unet import PRESETS, UNet2D, UNetConfig, count_parameters, unet_config

__all__ = [
    "PRESETS",
    "FourierEmbedding",
    "PositionalEmbedding",
    "SequenceTransformer",
    "SequenceTransformerConfig",
    "TRANSFORMER_PRESETS",
    "UNet2D",
    "UNetConfig",
    "build_network",
    "count_parameters",
    "network_config",
    "network_names",
    "register_network",
    "transformer_config",
    "unet_config",
]
