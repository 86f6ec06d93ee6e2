"""Networks by name: a model's ``config.json`` stores ``network: "unet2d"`` plus a plain config dict, and
:func:`build_network` turns that back into an ``nn.Module``.

Why a registry: every modality (images, space-time video, sequences, point clouds) needs "rebuild the network this
saved model was trained with" from JSON alone. Keeping name -> (config dataclass, network class, presets) in one
table means pipelines and the CLI never hard-code a network class, and adding a network is one
:func:`register_network` call. Nothing here knows about images; only the built-in table at the bottom does.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from torch import nn

from noisecraft.jsonconfig import from_dict

from .points import PRESETS as POINT_PRESETS
from .points import PointTransformer, PointTransformerConfig, point_transformer_config
from .spacetime import PRESETS as SPACETIME_PRESETS
from .spacetime import SpaceTimeUNet, SpaceTimeUNetConfig, spacetime_unet_config
from .transformer import PRESETS as TRANSFORMER_PRESETS
from .transformer import SequenceTransformer, SequenceTransformerConfig, transformer_config
from .unet import PRESETS as UNET_PRESETS
from .unet import UNet2D, UNetConfig, unet_config

__all__ = ["build_network", "network_config", "network_names", "register_network"]


@dataclass(frozen=True)
class _Network:
    config_class: type
    network_class: Callable[[Any], nn.Module]
    presets: Mapping[str, Mapping[str, Any]]
    configure: Callable[..., Any]


_NETWORKS: dict[str, _Network] = {}


def register_network(
    name: str,
    config_class: type,
    network_class: Callable[[Any], nn.Module],
    presets: Mapping[str, Mapping[str, Any]],
    *,
    configure: Callable[..., Any] | None = None,
) -> None:
    """Make ``name`` buildable: ``network_class(config_class(**config))``.

    ``config_class`` is a JSON-able config dataclass with ``to_dict()`` (the project's convention, so a built
    config can be saved); ``presets`` maps preset names to field values. ``configure(preset, **overrides)``, when
    given, builds the config instead of "preset values, then overrides" -- for networks whose overrides imply
    other fields (a U-Net keeps attention at the same level when only ``resolution`` changes).
    Registering a name twice is an error: silently replacing a network would change what saved models load as.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"a network name must be a non-empty string, got {name!r}")
    if name in _NETWORKS:
        raise ValueError(f"network {name!r} is already registered")
    if not dataclasses.is_dataclass(config_class) or not hasattr(config_class, "to_dict"):
        raise TypeError(f"config_class of network {name!r} must be a dataclass with to_dict(), got {config_class!r}")

    def merge_preset(preset: str, **overrides: Any) -> Any:
        return from_dict(config_class, {**presets[preset], **overrides})

    _NETWORKS[name] = _Network(config_class, network_class, dict(presets), configure or merge_preset)


def network_names() -> list[str]:
    """Registered network names, sorted."""
    return sorted(_NETWORKS)


def _lookup(name: str) -> _Network:
    if name not in _NETWORKS:
        raise ValueError(f"unknown network {name!r}; known networks are {', '.join(network_names())}")
    return _NETWORKS[name]


def build_network(name: str, config: Mapping[str, Any]) -> nn.Module:
    """The network ``name`` built from a plain config dict (as stored in a model's ``config.json``).

    Unknown keys raise the named error of :func:`noisecraft.jsonconfig.from_dict`; invalid values raise the
    config class's own validation error.
    """
    entry = _lookup(name)
    return entry.network_class(from_dict(entry.config_class, config))


def network_config(name: str, preset: str, **overrides: Any) -> dict[str, Any]:
    """The validated config dict of ``preset`` with ``overrides``, ready to store and pass to :func:`build_network`."""
    entry = _lookup(name)
    if preset not in entry.presets:
        raise ValueError(f"unknown preset {preset!r} for network {name!r}; valid presets are {sorted(entry.presets)}")
    return entry.configure(preset, **overrides).to_dict()


# The built-in networks.
register_network("unet2d", UNetConfig, UNet2D, UNET_PRESETS, configure=unet_config)
register_network("sequence_transformer", SequenceTransformerConfig, SequenceTransformer, TRANSFORMER_PRESETS,
                 configure=transformer_config)
register_network("spacetime_unet", SpaceTimeUNetConfig, SpaceTimeUNet, SPACETIME_PRESETS,
                 configure=spacetime_unet_config)
register_network("point_transformer", PointTransformerConfig, PointTransformer, POINT_PRESETS,
                 configure=point_transformer_config)
