"""The video model: a space-time U-Net (``nets/spacetime.py``) behind the shared preconditioner, the text encoder of
text-to-image, and its training loss. Generation lives in :mod:`noisecraft.video.pipeline`.

A video model is :class:`~noisecraft.images.pipeline.ImageDiffusionModel` with clips ``[B, C, T, H, W]`` in place of
images: the same denoiser ``D(x, sigma, context=, context_mask=)``, the same prompt encoding and "no text" condition,
so the image modality's prompt handling (negative prompts, AND/NOT composition) applies unchanged. Growing one from a
text-to-image model (Make-A-Video, Singer et al. 2022, Sec. 3.2) copies that model's U-Net into the spatial layers
(and a learned text encoder's weights); the temporal layers start as the identity, so the grown model is the image
model run frame by frame until training teaches it motion.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from torch import Tensor, nn

from noisecraft.diffusion.config import DiffusionConfig
from noisecraft.images.pipeline import ImageDiffusionModel
from noisecraft.jsonconfig import from_dict
from noisecraft.training.distributed import unwrap_model

MODEL_KIND = "video"
MAX_FRAMES = 16  # the longest clip a model accepts by default: twice the 8 frames it trains on


@dataclass
class VideoModelSpec:
    """What rebuilds a video model (``model_config`` in ``config.json``): ``frames`` per training clip, one
    frame's ``shape`` ``[C, H, W]``, the network (``network`` + ``net``), the diffusion config, the text encoder,
    the longest clip it generates (``max_frames``), and provenance: data, world config, the image model it was grown
    from."""

    frames: int
    shape: list[int]
    net: dict
    diffusion: dict
    network: str = "spacetime_unet"
    max_frames: int = MAX_FRAMES
    text_encoder: dict | None = None
    data: str = ""
    world: dict | None = None  # VideoWorldConfig of a world-trained model (held-out combinations)
    grown_from: str | None = None  # the text-to-image model whose weights initialised the spatial layers
    training: dict = field(default_factory=dict)
    kind: str = MODEL_KIND

    @property
    def resolution(self) -> int:
        return self.shape[1]

    @property
    def channels(self) -> int:
        return self.shape[0]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "VideoModelSpec":
        if data.get("kind", MODEL_KIND) != MODEL_KIND:
            raise ValueError(f"this is a {data.get('kind')!r} model, not a video model")
        spec = from_dict(cls, data, name="video model")
        if len(spec.shape) != 3 or not all(isinstance(n, int) and n > 0 for n in spec.shape):
            raise ValueError(f"video model shape must be [channels, height, width], got {spec.shape}")
        if not 1 <= spec.frames <= spec.max_frames:
            raise ValueError(f"video model frames ({spec.frames}) must be in [1, max_frames={spec.max_frames}]")
        return spec


class VideoDiffusionModel(ImageDiffusionModel):
    """The trainable denoiser ``D(x [B, C, T, H, W], sigma, context=, context_mask=)`` plus its text encoder: the
    image model's class with a space-time network (the spec's ``network``), see the module docstring."""

    def __init__(self, spec: VideoModelSpec):
        super().__init__(spec)  # reads spec.diffusion, network, net and text_encoder only


def grow_from_image_model(model: VideoDiffusionModel, image_dir: str | Path) -> VideoDiffusionModel:
    """Copy the text-to-image model in ``image_dir`` (EMA weights when it has them) into ``model``'s spatial layers
    and, for a learned text encoder, its encoder; temporal layers are left as they are (the identity when new)."""
    from safetensors.torch import load_file

    from noisecraft.nets.spacetime import load_image_weights

    folder = Path(image_dir)
    files = [folder / name for name in ("ema.safetensors", "model.safetensors") if (folder / name).is_file()]
    if not files:
        raise FileNotFoundError(f"{folder} holds no model weights (ema.safetensors or model.safetensors)")
    state = load_file(str(files[0]))
    load_image_weights(model.net, {k: v for k, v in state.items() if not k.startswith("text_encoder.")})
    if model.text_encoder is not None:
        encoder = {k[len("text_encoder."):]: v for k, v in state.items() if k.startswith("text_encoder.")}
        model.text_encoder.load_state_dict(encoder, strict=True)
    return model


def make_loss_fn(spec: VideoModelSpec) -> Callable:
    """``loss_fn(model, batch, generator) -> [B (+ B images)]`` for the shared trainer.

    ``batch["video"]`` ``[B, C, T, H, W]`` with ``batch["caption"]``; when the batch also holds ``batch["image"]``
    ``[B, C, H, W]`` with ``batch["image_caption"]``, the images are denoised as one-frame clips (which skip the
    temporal layers) and their per-example losses join the clips' (joint image-video training, Ho et al. 2022,
    Sec. 3.3). Captions are dropped with ``cond_drop_prob`` for classifier-free guidance, as for images.
    """
    diffusion = DiffusionConfig.from_dict(spec.diffusion)

    def conditioned_loss(model: nn.Module, x0: Tensor, captions: list[str], generator: torch.Generator) -> Tensor:
        inner = unwrap_model(model)
        if spec.text_encoder is None:
            return diffusion.loss(model, x0, generator=generator)
        context, mask = inner.encode_text(captions)
        return diffusion.loss(model, x0, generator=generator, null_cond=inner.null_text(context.shape[1]),
                              context=context, context_mask=mask)

    def loss_fn(model: nn.Module, batch: dict[str, Any], generator: torch.Generator) -> Tensor:
        losses = [conditioned_loss(model, batch["video"].float(), list(batch["caption"]), generator)]
        if "image" in batch:
            # The plain module, not a DDP wrapper: DDP's forward runs once per step (the clips', which uses every
            # parameter); this pass's gradients still reach the same parameters before the all-reduce hooks fire.
            losses.append(conditioned_loss(unwrap_model(model), batch["image"].float().unsqueeze(2),
                                           list(batch["image_caption"]), generator))
        return torch.cat(losses)

    return loss_fn
