"""2-D diffusion U-Net ``F(x, c_noise, class_labels, context, context_mask)``.

Architecture after ADM (Dhariwal & Nichol 2021, Sec. 3 and Appendix A) as re-implemented in EDM
(Karras et al. 2022, Appendix F.2, ``DhariwalUNet``/``SongUNet``):

* noise embedding: sinusoids of ``c_noise`` (positional or random Fourier), plus a learned class embedding,
  through a 2-layer SiLU MLP; injected into every residual block by adaptive GroupNorm;
* encoder of ``len(channel_mult)`` levels with ``num_res_blocks`` residual blocks each and an avg-pool
  residual block between levels; middle block with attention; mirrored decoder with ``num_res_blocks + 1``
  blocks per level concatenating encoder skips, and nearest-upsampling residual blocks;
* self-attention at ``attention_resolutions`` and, when ``context_dim`` is set, cross-attention to condition
  tokens after each self-attention (Rombach et al. 2022, Eq. 3);
* every residual branch and the output conv start at zero (the network starts as a near-identity residual
  stack with output exactly 0).

The raw network is wrapped by a preconditioner (``noisecraft.diffusion.precond``) into a denoiser.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from noisecraft.jsonconfig import from_dict
from torch import nn

from .embeddings import FourierEmbedding, PositionalEmbedding
from .layers import UNetBlock, group_norm, zero_init

NOISE_EMBEDDINGS = ("positional", "fourier")


def _require_int(name: str, value: Any, *, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"UNetConfig.{name} must be an integer >= {minimum}, got {value!r}")


@dataclass
class UNetConfig:
    """Everything needed to rebuild a :class:`UNet2D`; JSON-able via :meth:`to_dict` / :meth:`from_dict`.

    ``resolution`` is the training image size; it decides where attention goes (``attention_resolutions``
    are in pixels) and is validated, but the network runs on any size divisible by ``2 ** (len(channel_mult) - 1)``.
    ``num_classes = 0`` is unconditional; otherwise the class table has ``num_classes + 1`` rows and label
    ``num_classes`` means "no label" (classifier-free guidance, Ho & Salimans 2022).
    ``head_channels``, when set, overrides ``num_heads`` with ``channels // head_channels`` heads per layer.
    """

    in_channels: int = 3
    out_channels: int | None = None
    resolution: int = 32
    base_channels: int = 64
    channel_mult: tuple[int, ...] = (1, 2, 2)
    num_res_blocks: int = 2
    attention_resolutions: tuple[int, ...] = (16,)
    num_heads: int = 4
    head_channels: int | None = None
    dropout: float = 0.0
    noise_embedding: str = "positional"
    fourier_scale: float = 16.0
    embedding_mult: int = 4
    num_classes: int = 0
    context_dim: int | None = None
    groupnorm_groups: int = 32
    # A guidance-scale input w (LCM, Luo et al. 2023, sec. 4.2): sinusoids of w through a zero-initialised linear
    # layer, added to the noise embedding, so a distilled student keeps a guidance knob (noisecraft.distill).
    guidance_embedding: bool = False

    def __post_init__(self) -> None:
        # JSON turns tuples into lists; store tuples so configs compare equal after a round trip.
        self.channel_mult = tuple(self.channel_mult)
        self.attention_resolutions = tuple(self.attention_resolutions)
        self.validate()

    @property
    def effective_out_channels(self) -> int:
        return self.in_channels if self.out_channels is None else self.out_channels

    @property
    def downsample_factor(self) -> int:
        """Input height and width must be multiples of this."""
        return 2 ** (len(self.channel_mult) - 1)

    @property
    def level_resolutions(self) -> tuple[int, ...]:
        return tuple(self.resolution // 2**level for level in range(len(self.channel_mult)))

    def heads_for(self, channels: int) -> int:
        return channels // self.head_channels if self.head_channels is not None else self.num_heads

    def validate(self) -> None:
        for name in ("in_channels", "resolution", "base_channels", "num_res_blocks", "num_heads", "embedding_mult",
                     "groupnorm_groups"):
            _require_int(name, getattr(self, name), minimum=1)
        _require_int("num_classes", self.num_classes, minimum=0)
        for name in ("out_channels", "context_dim", "head_channels"):
            if getattr(self, name) is not None:
                _require_int(name, getattr(self, name), minimum=1)
        if not self.channel_mult:
            raise ValueError("UNetConfig.channel_mult must list at least one level, e.g. (1, 2, 2)")
        for mult in self.channel_mult:
            _require_int("channel_mult entries", mult, minimum=1)
        if self.base_channels % 2 != 0:
            raise ValueError(
                f"UNetConfig.base_channels must be even (sin/cos noise features), got {self.base_channels}"
            )
        if self.noise_embedding not in NOISE_EMBEDDINGS:
            raise ValueError(
                f"UNetConfig.noise_embedding must be one of {NOISE_EMBEDDINGS}, got {self.noise_embedding!r}"
            )
        if not self.fourier_scale > 0:
            raise ValueError(f"UNetConfig.fourier_scale must be positive, got {self.fourier_scale}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"UNetConfig.dropout must be in [0, 1), got {self.dropout}")
        if self.resolution % self.downsample_factor != 0:
            raise ValueError(
                f"UNetConfig.resolution={self.resolution} is not divisible by 2**(len(channel_mult)-1)="
                f"{self.downsample_factor}; change the resolution or use fewer levels in channel_mult"
            )
        unreachable = sorted(set(self.attention_resolutions) - set(self.level_resolutions))
        if unreachable:
            raise ValueError(
                f"UNetConfig.attention_resolutions {unreachable} never occur in this U-Net, whose levels run at "
                f"{self.level_resolutions} pixels; pick attention_resolutions from those"
            )
        levels = enumerate(self.level_resolutions)
        attention_levels = {level for level, res in levels if res in self.attention_resolutions}
        for level in attention_levels | {len(self.channel_mult) - 1}:  # the middle block always attends
            channels = self.base_channels * self.channel_mult[level]
            heads = self.heads_for(channels)
            if heads < 1 or channels % heads != 0 or (self.head_channels and channels % self.head_channels):
                raise ValueError(
                    f"attention at level {level} has {channels} channels, which cannot be split into heads "
                    f"(num_heads={self.num_heads}, head_channels={self.head_channels}); choose a divisor of {channels}"
                )

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types only (tuples become lists)."""
        data = dataclasses.asdict(self)
        return {key: list(value) if isinstance(value, tuple) else value for key, value in data.items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> UNetConfig:
        return from_dict(cls, data)


PRESETS: dict[str, dict[str, Any]] = {
    # Unit tests: 16x16, ~55k parameters.
    "tiny": dict(resolution=16, base_channels=8, channel_mult=(1, 2), num_res_blocks=1, attention_resolutions=(8,),
                 num_heads=2, groupnorm_groups=4),
    # CPU training on 16-32 px images (~2M parameters).
    "small": dict(resolution=16, base_channels=32, channel_mult=(1, 2, 2), num_res_blocks=2,
                  attention_resolutions=(8,), num_heads=4, groupnorm_groups=16),
    # GPU training on 32-64 px images (~43M parameters), ADM/DDPM++-CIFAR-like widths.
    "base": dict(resolution=32, base_channels=128, channel_mult=(1, 2, 2, 2), num_res_blocks=2,
                 attention_resolutions=(16,), head_channels=64, dropout=0.1),
}


def unet_config(preset: str, **overrides: Any) -> UNetConfig:
    """A preset from :data:`PRESETS` with keyword ``overrides`` applied.

    When ``resolution`` is overridden but ``attention_resolutions`` is not, attention stays at the same
    U-Net levels (e.g. "small" attends at 8 px for 16 px input, at 16 px for 32 px input).
    """
    if preset not in PRESETS:
        raise ValueError(f"unknown U-Net preset {preset!r}; valid presets are {sorted(PRESETS)}")
    values = {**PRESETS[preset], **overrides}
    if "resolution" in overrides and "attention_resolutions" not in overrides:
        preset_resolution = PRESETS[preset]["resolution"]
        levels = [round(math.log2(preset_resolution / res)) for res in PRESETS[preset]["attention_resolutions"]]
        values["attention_resolutions"] = tuple(overrides["resolution"] // 2**level for level in levels)
    return UNetConfig.from_dict(values)


def count_parameters(model: nn.Module, *, trainable_only: bool = False) -> int:
    """Number of scalar parameters in ``model`` (only those with ``requires_grad`` if ``trainable_only``)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


class UNet2D(nn.Module):
    """Raw diffusion network ``F(x, c_noise, class_labels=None, context=None, context_mask=None)``; see module doc."""

    def __init__(self, config: UNetConfig):
        super().__init__()
        if not isinstance(config, UNetConfig):
            raise TypeError(f"UNet2D expects a UNetConfig (see unet_config(preset)), got {type(config).__name__}")
        config.validate()
        self.config = config
        base, groups = config.base_channels, config.groupnorm_groups
        embedding_channels = base * config.embedding_mult

        # Noise/class embedding: emb = SiLU(Linear(SiLU(Linear(sinusoids(c_noise)) + E[label]))).
        if config.noise_embedding == "fourier":
            self.noise_features = FourierEmbedding(base, scale=config.fourier_scale)
        else:
            self.noise_features = PositionalEmbedding(base)
        self.noise_proj = nn.Linear(base, embedding_channels)
        self.class_embedding = (
            nn.Embedding(config.num_classes + 1, embedding_channels) if config.num_classes > 0 else None
        )
        if config.guidance_embedding:  # zero at initialisation: the student starts as its teacher
            self.guidance_features = PositionalEmbedding(base)
            self.guidance_proj = zero_init(nn.Linear(base, embedding_channels))
        self.embedding_mlp = nn.Sequential(nn.SiLU(), nn.Linear(embedding_channels, embedding_channels), nn.SiLU())
        # Learned "null" condition token, always attendable: a fully masked (or absent) context attends to it alone.
        self.null_context = nn.Parameter(torch.randn(config.context_dim)) if config.context_dim else None

        def block(in_ch: int, out_ch: int, *, resample_mode: str = "none", attention: bool = False) -> UNetBlock:
            return UNetBlock(
                in_ch, out_ch, embedding_channels=embedding_channels, resample_mode=resample_mode,
                attention=attention, num_heads=config.heads_for(out_ch), context_dim=config.context_dim,
                dropout=config.dropout, max_groups=groups,
            )

        self.conv_in = nn.Conv2d(config.in_channels, base, kernel_size=3, padding=1)
        self.encoder = nn.ModuleList()
        skip_channels = [base]
        channels = base
        last_level = len(config.channel_mult) - 1
        for level, (mult, res) in enumerate(zip(config.channel_mult, config.level_resolutions)):
            for _ in range(config.num_res_blocks):
                self.encoder.append(block(channels, base * mult, attention=res in config.attention_resolutions))
                channels = base * mult
                skip_channels.append(channels)
            if level < last_level:
                self.encoder.append(block(channels, channels, resample_mode="down"))
                skip_channels.append(channels)

        self.middle = nn.ModuleList([block(channels, channels, attention=True), block(channels, channels)])

        self.decoder = nn.ModuleList()
        takes_skip = []
        for level in reversed(range(len(config.channel_mult))):
            out = base * config.channel_mult[level]
            for _ in range(config.num_res_blocks + 1):
                attention = config.level_resolutions[level] in config.attention_resolutions
                self.decoder.append(block(channels + skip_channels.pop(), out, attention=attention))
                takes_skip.append(True)
                channels = out
            if level > 0:
                self.decoder.append(block(channels, channels, resample_mode="up"))
                takes_skip.append(False)
        self.decoder_takes_skip = tuple(takes_skip)

        self.norm_out = group_norm(channels, groups)
        self.conv_out = zero_init(nn.Conv2d(channels, config.effective_out_channels, kernel_size=3, padding=1))

    def forward(
        self,
        x: torch.Tensor,
        c_noise: torch.Tensor,
        class_labels: torch.Tensor | None = None,
        context: torch.Tensor | None = None,
        context_mask: torch.Tensor | None = None,
        guidance: torch.Tensor | float | None = None,
    ) -> torch.Tensor:
        """``x`` ``[B, in_channels, H, W]``, ``c_noise`` ``[B]`` (or 0-d) -> ``[B, out_channels, H, W]``.

        ``class_labels``: LongTensor ``[B]`` in ``[0, num_classes]``; None = "no label" (row ``num_classes``).
        ``context``: ``[B, T, context_dim]`` tokens; ``context_mask``: bool ``[B, T]``, True = real token.
        ``guidance``: the guidance scale w (a float, 0-d or ``[B]``) of a network with ``guidance_embedding``;
        None = 1 (the plain conditional model).
        """
        c_noise = self._check_inputs(x, c_noise, class_labels, context, context_mask)
        batch = x.shape[0]

        emb = self.noise_proj(self.noise_features(c_noise))
        if self.class_embedding is not None:
            if class_labels is None:
                class_labels = torch.full((batch,), self.config.num_classes, dtype=torch.long, device=x.device)
            emb = emb + self.class_embedding(class_labels)
        if self.config.guidance_embedding:
            w = torch.as_tensor(1.0 if guidance is None else guidance, dtype=torch.float32, device=x.device)
            emb = emb + self.guidance_proj(self.guidance_features(w.reshape(-1).expand(batch)))
        elif guidance is not None:
            raise ValueError("guidance was given but the U-Net has no guidance input; set "
                             "UNetConfig.guidance_embedding (a distilled student has it)")
        emb = self.embedding_mlp(emb)
        context, context_mask = self._with_null_token(context, context_mask, batch)

        h = self.conv_in(x)
        skips = [h]
        for block in self.encoder:
            h = block(h, emb, context, context_mask)
            skips.append(h)
        for block in self.middle:
            h = block(h, emb, context, context_mask)
        for block, takes_skip in zip(self.decoder, self.decoder_takes_skip):
            if takes_skip:
                h = torch.cat([h, skips.pop()], dim=1)
            h = block(h, emb, context, context_mask)
        return self.conv_out(F.silu(self.norm_out(h)))

    def _with_null_token(
        self, context: torch.Tensor | None, context_mask: torch.Tensor | None, batch: int
    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """Prepend the learned null token (never masked); no context at all = the null token alone."""
        if self.null_context is None:
            return None, None
        null = self.null_context.expand(batch, 1, -1)
        if context is None:
            return null, None
        tokens = torch.cat([null.to(context.dtype), context], dim=1)
        if context_mask is None:
            return tokens, None
        always = torch.ones(batch, 1, dtype=torch.bool, device=context_mask.device)
        return tokens, torch.cat([always, context_mask], dim=1)

    def _check_inputs(self, x, c_noise, class_labels, context, context_mask) -> torch.Tensor:
        """Raise a clear error for inputs that do not match the config; return ``c_noise`` as ``[B]``."""
        cfg = self.config
        if not isinstance(x, torch.Tensor) or x.ndim != 4:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"UNet2D expects x of shape [B, C, H, W], got {shape}")
        batch, channels, height, width = x.shape
        if channels != cfg.in_channels:
            raise ValueError(
                f"UNet2D was built for {cfg.in_channels}-channel images but x has shape {tuple(x.shape)}; "
                f"set UNetConfig.in_channels={channels} or convert the images"
            )
        factor = cfg.downsample_factor
        if height % factor or width % factor:
            raise ValueError(
                f"image size {height}x{width} is not divisible by {factor} (2**(len(channel_mult)-1)); "
                f"pad/crop the images or use fewer levels in channel_mult"
            )
        if not isinstance(c_noise, torch.Tensor):
            raise TypeError(f"c_noise must be a tensor of shape [B], got {type(c_noise).__name__}")
        if c_noise.ndim == 0:
            c_noise = c_noise.expand(batch)
        if c_noise.shape != (batch,):
            raise ValueError(f"c_noise must have shape [B]=[{batch}] (one per image), got {tuple(c_noise.shape)}")

        if class_labels is not None:
            if cfg.num_classes == 0:
                raise ValueError("class_labels were given but the U-Net is unconditional; set UNetConfig.num_classes")
            integer = not class_labels.dtype.is_floating_point and class_labels.dtype != torch.bool
            if not integer or class_labels.shape != (batch,):
                raise ValueError(
                    f"class_labels must be an integer tensor of shape [{batch}], "
                    f"got dtype {class_labels.dtype} and shape {tuple(class_labels.shape)}"
                )
            # Value check only in eager mode: it reads tensor values, which would break a compiled graph.
            out_of_range = (class_labels < 0) | (class_labels > cfg.num_classes)
            if not torch.compiler.is_compiling() and bool(out_of_range.any()):
                raise ValueError(
                    f"class_labels must lie in [0, {cfg.num_classes}] ({cfg.num_classes} means 'no label'), "
                    f"got min {int(class_labels.min())} and max {int(class_labels.max())}"
                )

        if context_mask is not None and context is None:
            raise ValueError("context_mask was given without context")
        if context is not None:
            if cfg.context_dim is None:
                raise ValueError("context was given but the U-Net has no cross-attention; set UNetConfig.context_dim")
            if context.ndim != 3 or context.shape[0] != batch or context.shape[2] != cfg.context_dim:
                raise ValueError(
                    f"context must have shape [B={batch}, T, context_dim={cfg.context_dim}], got {tuple(context.shape)}"
                )
            mask_ok = context_mask is None or (
                context_mask.dtype == torch.bool and context_mask.shape == context.shape[:2]
            )
            if not mask_ok:
                raise ValueError(
                    f"context_mask must be a bool tensor of shape {tuple(context.shape[:2])} (True = real token), "
                    f"got dtype {context_mask.dtype} and shape {tuple(context_mask.shape)}"
                )
        return c_noise
