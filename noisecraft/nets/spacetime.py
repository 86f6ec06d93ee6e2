"""Space-time factorised video U-Net ``F(x [B, C, T, H, W], c_noise, class_labels, context, context_mask)``.

After Video Diffusion Models (Ho et al. 2022, Sec. 3: a 2-D U-Net run on every frame, with attention over time
after each spatial attention) and Make-A-Video (Singer et al. 2022, Sec. 3.2: a 1-D temporal convolution after each
spatial convolution, temporal attention after each spatial attention, both initialised to the identity so that the
network starts as the pretrained text-to-image model applied frame by frame).

The spatial network *is* a :class:`~noisecraft.nets.unet.UNet2D` (``self.spatial``, whose state dict is an image
model's, see :func:`load_image_weights`); this module only runs its blocks in the same order as ``UNet2D.forward``
with temporal layers interleaved:

    ResBlock -> temporal conv -> spatial self-attention -> temporal attention -> cross-attention

* temporal conv: ``h + Conv1d_t(SiLU(GroupNorm(h)))`` per pixel, ``Conv1d`` zero-initialised;
* temporal attention: ``h + Proj(softmax(Q K^T / sqrt(d)) V)`` over the frames of each pixel, with sinusoidal
  frame positions added to the normalised tokens and ``Proj`` zero-initialised;

so at initialisation the output equals the image network's on every frame exactly. A clip of one frame (``T == 1``)
skips the temporal layers altogether, so images (as one-frame clips) and videos can be trained together. Noise
level, class label and text context are per clip and shared by its frames.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from .layers import UNetBlock, group_norm, zero_init
from .unet import PRESETS as UNET_PRESETS
from .unet import UNet2D, UNetConfig, _require_int, unet_config

TEMPORAL_FIELDS = ("temporal_kernel", "temporal_attention")


@dataclass
class SpaceTimeUNetConfig(UNetConfig):
    """A :class:`UNetConfig` (the spatial network) plus the temporal layers: ``temporal_kernel`` (odd) frames per
    temporal convolution and whether to attend over time wherever the U-Net attends over space."""

    temporal_kernel: int = 3
    temporal_attention: bool = True

    def validate(self) -> None:
        super().validate()
        _require_int("temporal_kernel", self.temporal_kernel, minimum=1)
        if self.temporal_kernel % 2 == 0:
            raise ValueError(f"SpaceTimeUNetConfig.temporal_kernel must be odd, got {self.temporal_kernel}")
        if not isinstance(self.temporal_attention, bool):
            raise ValueError(f"SpaceTimeUNetConfig.temporal_attention must be a bool, got {self.temporal_attention!r}")

    def image_config(self) -> UNetConfig:
        """The config of the spatial network alone."""
        names = {f.name for f in dataclasses.fields(UNetConfig)}
        return UNetConfig(**{name: getattr(self, name) for name in names})

    @classmethod
    def from_image_config(cls, image: UNetConfig | Mapping[str, Any], **temporal: Any) -> SpaceTimeUNetConfig:
        data = image.to_dict() if isinstance(image, UNetConfig) else dict(image)
        return cls.from_dict({**data, **temporal})


PRESETS: dict[str, dict[str, Any]] = {name: dict(values) for name, values in UNET_PRESETS.items()}


def spacetime_unet_config(preset: str, **overrides: Any) -> SpaceTimeUNetConfig:
    """A U-Net preset (see :func:`noisecraft.nets.unet.unet_config`) plus temporal ``overrides``."""
    temporal = {k: overrides.pop(k) for k in TEMPORAL_FIELDS if k in overrides}
    return SpaceTimeUNetConfig.from_image_config(unet_config(preset, **overrides), **temporal)


def _frame_positions(frames: int, channels: int, device, dtype) -> torch.Tensor:
    """Sinusoidal embedding ``[T, channels]`` of frame indices (Vaswani et al. 2017)."""
    half = channels // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=device, dtype=torch.float32) / max(half, 1))
    angles = torch.arange(frames, device=device, dtype=torch.float32)[:, None] * freqs[None]
    emb = torch.cat([angles.sin(), angles.cos()], dim=1)
    return F.pad(emb, (0, channels - emb.shape[1])).to(dtype)


def _pixels_to_time(h: torch.Tensor, frames: int) -> torch.Tensor:
    """``[B*T, C, H, W]`` -> ``[B*H*W, C, T]``."""
    bt, channels, height, width = h.shape
    return h.reshape(bt // frames, frames, channels, height, width).permute(0, 3, 4, 2, 1).reshape(-1, channels, frames)


def _time_to_pixels(h: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`_pixels_to_time`."""
    bt, channels, height, width = like.shape
    frames = h.shape[-1]
    return h.reshape(bt // frames, height, width, channels, frames).permute(0, 4, 3, 1, 2).reshape(like.shape)


class TemporalConv(nn.Module):
    """``h + Conv1d_t(SiLU(GroupNorm(h)))`` along time for every pixel; the identity at initialisation."""

    def __init__(self, channels: int, *, kernel_size: int = 3, max_groups: int = 32):
        super().__init__()
        self.norm = group_norm(channels, max_groups)
        self.conv = zero_init(nn.Conv1d(channels, channels, kernel_size, padding=kernel_size // 2))

    def forward(self, h: torch.Tensor, frames: int) -> torch.Tensor:
        t = _pixels_to_time(h, frames)
        return h + _time_to_pixels(self.conv(F.silu(self.norm(t))), h)


class TemporalAttention(nn.Module):
    """Residual multi-head self-attention over the frames of each pixel; the identity at initialisation."""

    def __init__(self, channels: int, *, num_heads: int, max_groups: int = 32):
        super().__init__()
        if channels % num_heads != 0:
            raise ValueError(f"temporal attention channels ({channels}) must be divisible by num_heads ({num_heads})")
        self.num_heads = num_heads
        self.norm = group_norm(channels, max_groups)
        self.to_qkv = nn.Linear(channels, 3 * channels)
        self.proj_out = zero_init(nn.Linear(channels, channels))

    def forward(self, h: torch.Tensor, frames: int) -> torch.Tensor:
        t = self.norm(_pixels_to_time(h, frames)).transpose(1, 2)  # [N, T, C]
        n, _, channels = t.shape
        t = t + _frame_positions(frames, channels, t.device, t.dtype)
        q, k, v = (x.reshape(n, frames, self.num_heads, -1).transpose(1, 2) for x in self.to_qkv(t).chunk(3, dim=-1))
        out = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(n, frames, channels)
        return h + _time_to_pixels(self.proj_out(out).transpose(1, 2), h)


class SpaceTimeUNet(nn.Module):
    """Raw video diffusion network; see the module docstring."""

    def __init__(self, config: SpaceTimeUNetConfig):
        super().__init__()
        if not isinstance(config, SpaceTimeUNetConfig):
            raise TypeError(f"SpaceTimeUNet expects a SpaceTimeUNetConfig, got {type(config).__name__}")
        config.validate()
        self.config = config
        self.spatial = UNet2D(config.image_config())
        groups = config.groupnorm_groups
        self.temporal_convs = nn.ModuleList()
        self.temporal_attentions = nn.ModuleDict()
        for index, block in enumerate(self._blocks()):
            self.temporal_convs.append(TemporalConv(block.out_channels, kernel_size=config.temporal_kernel,
                                                    max_groups=groups))
            if config.temporal_attention and block.self_attention is not None:
                self.temporal_attentions[str(index)] = TemporalAttention(
                    block.out_channels, num_heads=config.heads_for(block.out_channels), max_groups=groups)

    def _blocks(self) -> list[UNetBlock]:
        return [*self.spatial.encoder, *self.spatial.middle, *self.spatial.decoder]

    def temporal_parameters(self) -> list[nn.Parameter]:
        """The parameters that are not the image network's (for freezing the spatial layers, or a separate LR)."""
        return [*self.temporal_convs.parameters(), *self.temporal_attentions.parameters()]

    def _block(self, index: int, block: UNetBlock, h, emb, context, context_mask, frames: int) -> torch.Tensor:
        h = block.res(h, emb)
        if frames > 1:
            h = self.temporal_convs[index](h, frames)
        if block.self_attention is not None:
            h = block.self_attention(h)
            if frames > 1 and str(index) in self.temporal_attentions:
                h = self.temporal_attentions[str(index)](h, frames)
        if block.cross_attention is not None:
            h = block.cross_attention(h, context, context_mask)
        return h

    def forward(
        self,
        x: torch.Tensor,
        c_noise: torch.Tensor,
        class_labels: torch.Tensor | None = None,
        context: torch.Tensor | None = None,
        context_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``x`` ``[B, in_channels, T, H, W]``, ``c_noise`` ``[B]`` (or 0-d) -> ``[B, out_channels, T, H, W]``;
        the conditioning arguments are per clip, as in :meth:`UNet2D.forward`."""
        if not isinstance(x, torch.Tensor) or x.ndim != 5:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"SpaceTimeUNet expects x of shape [B, C, T, H, W], got {shape}")
        batch, channels, frames, height, width = x.shape
        if not isinstance(c_noise, torch.Tensor):
            raise TypeError(f"c_noise must be a tensor of shape [B], got {type(c_noise).__name__}")
        if c_noise.ndim == 0:
            c_noise = c_noise.expand(batch)
        if c_noise.shape != (batch,):
            raise ValueError(f"c_noise must have shape [B]=[{batch}] (one per clip), got {tuple(c_noise.shape)}")

        for name, value in (("class_labels", class_labels), ("context", context), ("context_mask", context_mask)):
            if value is not None and (value.ndim == 0 or value.shape[0] != batch):
                raise ValueError(f"{name} must have one row per clip (batch {batch}), got shape {tuple(value.shape)}")

        def per_frame(value):
            return None if value is None else value.repeat_interleave(frames, dim=0)

        flat = x.transpose(1, 2).reshape(batch * frames, channels, height, width)
        net = self.spatial
        c_noise = net._check_inputs(flat, per_frame(c_noise), per_frame(class_labels), per_frame(context),
                                    per_frame(context_mask))
        class_labels, context, context_mask = per_frame(class_labels), per_frame(context), per_frame(context_mask)

        # The image network's forward pass, block by block (see UNet2D.forward).
        emb = net.noise_proj(net.noise_features(c_noise))
        if net.class_embedding is not None:
            if class_labels is None:
                class_labels = torch.full((flat.shape[0],), self.config.num_classes, dtype=torch.long, device=x.device)
            emb = emb + net.class_embedding(class_labels)
        emb = net.embedding_mlp(emb)
        context, context_mask = net._with_null_token(context, context_mask, flat.shape[0])

        h = net.conv_in(flat)
        skips = [h]
        index = 0
        for block in net.encoder:
            h = self._block(index, block, h, emb, context, context_mask, frames)
            skips.append(h)
            index += 1
        for block in net.middle:
            h = self._block(index, block, h, emb, context, context_mask, frames)
            index += 1
        for block, takes_skip in zip(net.decoder, net.decoder_takes_skip):
            if takes_skip:
                h = torch.cat([h, skips.pop()], dim=1)
            h = self._block(index, block, h, emb, context, context_mask, frames)
            index += 1
        out = net.conv_out(F.silu(net.norm_out(h)))
        return out.reshape(batch, frames, -1, height, width).transpose(1, 2)


# ------------------------------------------------------------------------------------ from a trained image model

_WEIGHT_FILES = ("ema.safetensors", "model.safetensors")


def image_state_dict(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The UNet2D entries of a checkpoint's state dict, with any prefix (``"denoiser.net."``, ``"net."``,
    ``"spatial."``...) removed: the prefix is whatever precedes ``noise_proj.weight``."""
    prefixes = [key[: -len("noise_proj.weight")] for key in state_dict if key.endswith("noise_proj.weight")]
    if len(prefixes) != 1:
        raise ValueError(f"expected one U-Net in the state dict (one '...noise_proj.weight' key), "
                         f"found {len(prefixes)}")
    prefix = prefixes[0]
    return {key[len(prefix):]: value for key, value in state_dict.items() if key.startswith(prefix)}


def load_image_weights(net: SpaceTimeUNet, state_dict: Mapping[str, torch.Tensor]) -> SpaceTimeUNet:
    """Initialise ``net``'s spatial layers from a trained UNet2D (its state dict, possibly prefixed); the temporal
    layers are left as they are (the identity when freshly built). Strict: every spatial weight must be present."""
    net.spatial.load_state_dict(image_state_dict(state_dict), strict=True)
    return net


def image_unet_config(model_dir: str | Path) -> dict[str, Any]:
    """The U-Net config dict of a saved image model: ``model_config.unet`` or ``model_config.net`` of its
    ``config.json`` (``net`` may be the config itself or ``{"network"/"name": ..., "config": {...}}``)."""
    data = json.loads((Path(model_dir) / "config.json").read_text(encoding="utf-8"))
    model_config = data.get("model_config", data)
    found = model_config.get("unet", model_config.get("net"))
    if isinstance(found, Mapping) and isinstance(found.get("config"), Mapping):
        found = found["config"]
    if not isinstance(found, Mapping):
        raise ValueError(f"{model_dir}/config.json has no U-Net config under model_config.unet or model_config.net")
    return dict(found)


def from_image_model(model_dir: str | Path, **temporal: Any) -> SpaceTimeUNet:
    """A space-time U-Net whose spatial layers are the image model in ``model_dir`` (EMA weights when saved),
    temporal layers fresh (so it starts as that model applied frame by frame)."""
    from safetensors.torch import load_file

    folder = Path(model_dir)
    net = SpaceTimeUNet(SpaceTimeUNetConfig.from_image_config(image_unet_config(folder), **temporal))
    for name in _WEIGHT_FILES:
        if (folder / name).is_file():
            return load_image_weights(net, load_file(str(folder / name)))
    raise FileNotFoundError(f"{folder} holds none of {_WEIGHT_FILES}")
