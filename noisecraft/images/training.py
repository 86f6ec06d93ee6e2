"""Training an image model: data spec -> dataset, spec -> model, then the shared :class:`Trainer`."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from torch import nn

from noisecraft.diffusion.config import DiffusionConfig
from noisecraft.images.data import load_dataset
from noisecraft.images.pipeline import ImageDiffusionModel, ImagePipeline, make_loss_fn, make_spec
from noisecraft.nets.unet import unet_config
from noisecraft.training.trainer import TrainConfig, Trainer, TrainResult

PARAMETERIZATIONS = {"edm": DiffusionConfig.edm, "eps": DiffusionConfig.ddpm, "v": DiffusionConfig.v_prediction}


@dataclass
class ImageTrainConfig:
    """One JSON-able description of an image training run (``noisecraft train --config FILE`` reads this)."""

    data: str = "digits"                 # "digits" or an image folder
    out_dir: str = "runs/digits"
    resolution: int | None = None        # None: digits -> 16, folders -> their (common) image size
    channels: int | None = None          # None: digits -> 1, folders -> 3
    conditional: bool = True             # use class labels when the data has them
    preset: str = "small"                # U-Net preset: tiny | small | base
    unet: dict = field(default_factory=dict)        # overrides of the preset's fields
    parameterization: str = "edm"        # edm | eps (DDPM) | v
    diffusion: dict = field(default_factory=dict)   # overrides of DiffusionConfig fields
    random_flip: bool = False
    skip_bad: bool = False
    sample_steps: int = 32               # steps of the periodic sample grids
    train: dict = field(default_factory=dict)       # TrainConfig fields

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ImageTrainConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown training config keys {unknown}; valid keys are {sorted(known)}")
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def build_dataset(config: ImageTrainConfig):
    if config.data == "digits":
        if config.channels not in (None, 1):
            raise ValueError("the digits dataset is grey: use channels=1 (or leave it unset)")
        return load_dataset("digits", resolution=config.resolution or 16)
    return load_dataset(config.data, resolution=config.resolution, channels=config.channels or 3,
                        random_flip=config.random_flip, skip_bad=config.skip_bad)


def build_diffusion(config: ImageTrainConfig, *, conditional: bool) -> DiffusionConfig:
    """The preset of ``config.parameterization`` with ``config.diffusion`` overrides; conditional models drop their
    label 10% of the time by default, so that classifier-free guidance works out of the box."""
    if config.parameterization not in PARAMETERIZATIONS:
        raise ValueError(f"unknown parameterization {config.parameterization!r}; choose one of "
                         f"{', '.join(PARAMETERIZATIONS)}")
    base = PARAMETERIZATIONS[config.parameterization]().to_dict() | {"cond_drop_prob": 0.1 if conditional else 0.0}
    return DiffusionConfig.from_dict(base | config.diffusion)


def make_sample_hook(num_images_per_class: int = 8, steps: int = 32):
    """Periodic sample grid: one row per class (or an 8x8 grid), fixed seed so grids are comparable over time."""

    def sample_fn(ema_model: nn.Module, step: int, out_dir: Path) -> dict[str, Any]:
        pipeline = ImagePipeline(_unwrap(ema_model), source=str(out_dir))
        names = pipeline.spec.class_names
        labels = [c for c in range(len(names)) for _ in range(num_images_per_class)] if names else None
        n = len(labels) if labels else 64
        images, parameters = pipeline.sample(n, labels=labels, steps=steps, seed=0)
        path = out_dir / "samples" / f"step_{step:08d}.png"
        from noisecraft.images.io import save_grid  # local: only the hook writes grids
        save_grid(images, path, nrow=num_images_per_class if names else 8, parameters=parameters | {"step": step},
                  labels=names or None, upscale=max(1, 64 // pipeline.spec.resolution))
        return {"sample_grid": str(path)}

    return sample_fn


def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if hasattr(model, "module") else model


def train_images(config: ImageTrainConfig | dict, *, resume: bool = False, progress: bool = True) -> TrainResult:
    """Train an image diffusion model; the run folder becomes a loadable model (``noisecraft.load(out_dir)``)."""
    if isinstance(config, dict):
        config = ImageTrainConfig.from_dict(config)
    train_config = TrainConfig.from_dict(config.train)
    dataset = build_dataset(config)
    image_shape = tuple(dataset[0]["image"].shape)
    channels, resolution = image_shape[0], image_shape[-1]
    if image_shape[-1] != image_shape[-2]:
        raise ValueError(f"images must be square, got {image_shape[-2]}x{image_shape[-1]}; pass --resolution N to "
                         "resize and center-crop them")
    class_names = list(getattr(dataset, "class_names", []) or []) if config.conditional else []
    unet = unet_config(config.preset, **config.unet)
    diffusion = build_diffusion(config, conditional=bool(class_names))
    spec = make_spec(resolution=resolution, channels=channels, class_names=class_names, unet=unet,
                     diffusion=diffusion, data=config.data,
                     # TrainConfig is stored beside model_config already; out_dir may move between runs.
                     training={k: v for k, v in config.to_dict().items() if k not in ("train", "out_dir")})
    torch.manual_seed(train_config.seed)  # network initialisation
    model = ImageDiffusionModel(spec)
    trainer = Trainer(model, make_loss_fn(spec, random_flip=config.random_flip), dataset, train_config,
                      config.out_dir, model_config=spec.to_dict(),
                      sample_fn=make_sample_hook(steps=config.sample_steps), progress=progress)
    return trainer.fit(resume=resume)
