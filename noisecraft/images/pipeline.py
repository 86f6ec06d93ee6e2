"""The image modality: binds the U-Net, the shared engine and the shared trainer.

This layer only does what is specific to images: build the network from a JSON spec, turn a dataset item into
``x0`` plus conditions, draw starting noise of image shape, and write PNGs. The math lives in
:mod:`noisecraft.diffusion`, the loop in :mod:`noisecraft.training`.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Callable

import torch
from torch import Tensor, nn

from noisecraft import __version__
from noisecraft.diffusion.config import DiffusionConfig
from noisecraft.diffusion.guidance import guided_denoiser
from noisecraft.diffusion.samplers import get_sampler, nfe
from noisecraft.images.data import random_hflip
from noisecraft.images.io import save_grid, save_png
from noisecraft.nets.unet import UNet2D, UNetConfig
from noisecraft.training.checkpoint import load_weights, read_config, resolve_model_dir

MODEL_KIND = "image"


@dataclass
class ImageModelSpec:
    """Everything needed to rebuild an image model; stored as ``model_config`` in ``config.json``."""

    resolution: int
    channels: int
    unet: dict
    diffusion: dict
    class_names: list[str] = field(default_factory=list)
    data: str = ""  # provenance only: what the model was trained on
    training: dict = field(default_factory=dict)  # provenance only: the run's full training config
    kind: str = MODEL_KIND

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ImageModelSpec":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown image model keys {unknown}; valid keys are {sorted(known)}")
        if data.get("kind", MODEL_KIND) != MODEL_KIND:
            raise ValueError(f"this is a {data.get('kind')!r} model, not an image model")
        return cls(**data)


class ImageDiffusionModel(nn.Module):
    """The trainable denoiser ``D(x, sigma, class_labels=None, ...)``: a U-Net behind the configured preconditioner."""

    def __init__(self, spec: ImageModelSpec):
        super().__init__()
        self.spec = spec
        self.diffusion = DiffusionConfig.from_dict(spec.diffusion)
        self.net = UNet2D(UNetConfig.from_dict(spec.unet))
        self.denoiser = self.diffusion.make_denoiser(self.net)

    def forward(self, x: Tensor, sigma: float | Tensor, **cond: Tensor) -> Tensor:
        return self.denoiser(x, sigma, **cond)


def make_spec(*, resolution: int, channels: int, class_names: list[str], unet: UNetConfig,
              diffusion: DiffusionConfig, data: str = "", training: dict | None = None) -> ImageModelSpec:
    """Spec with the U-Net's channel / class / resolution fields forced to agree with the data."""
    unet_dict = unet.to_dict() | {"in_channels": channels, "out_channels": None, "resolution": resolution,
                                  "num_classes": len(class_names)}
    return ImageModelSpec(resolution=resolution, channels=channels, unet=unet_dict, diffusion=diffusion.to_dict(),
                          class_names=list(class_names), data=data, training=training or {})


def make_loss_fn(spec: ImageModelSpec, *, random_flip: bool = False) -> Callable:
    """``loss_fn(model, batch, generator) -> [B]`` for the shared trainer.

    Class labels are replaced by the "no label" class with probability ``cond_drop_prob`` (inside
    ``DiffusionConfig.loss``) so that one network learns both the conditional and the unconditional denoiser
    (classifier-free guidance, Ho & Salimans 2022, Alg. 1).
    """
    diffusion = DiffusionConfig.from_dict(spec.diffusion)
    null_label = spec.num_classes

    def loss_fn(model: nn.Module, batch: dict[str, Tensor], generator: torch.Generator) -> Tensor:
        x0 = batch["image"]
        if random_flip:
            x0 = random_hflip(x0, generator=generator)
        if not spec.num_classes:
            return diffusion.loss(model, x0, generator=generator)
        null = {"class_labels": torch.tensor(null_label, device=x0.device)}
        return diffusion.loss(model, x0, generator=generator, null_cond=null, class_labels=batch["label"].long())

    return loss_fn


class ImagePipeline:
    """A trained image model ready to sample: ``ImagePipeline.load(path).sample(n, labels=..., seed=...)``."""

    def __init__(self, model: ImageDiffusionModel, *, source: str = ""):
        self.model = model.eval().requires_grad_(False)
        self.spec = model.spec
        self.diffusion = model.diffusion
        self.source = source

    @classmethod
    def load(cls, path: str | Path, *, use_ema: bool = True, device: str | torch.device = "cpu") -> "ImagePipeline":
        """Load a run folder, its final export or one checkpoint folder (EMA weights unless ``use_ema=False``)."""
        model_dir = resolve_model_dir(path)
        config = read_config(model_dir)
        spec = ImageModelSpec.from_dict(config["model_config"])
        model = ImageDiffusionModel(spec)
        load_weights(model, model_dir, use_ema=use_ema)
        return cls(model.to(device), source=str(model_dir))

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def labels_for(self, labels: list[int | str] | None, n: int) -> Tensor | None:
        """Class indices from ints or class names; ``None`` gives the "no label" class for conditional models."""
        if not self.spec.num_classes:
            if labels is not None:
                raise ValueError("this model is unconditional: it takes no class labels")
            return None
        if labels is None:
            return torch.full((n,), self.spec.num_classes, dtype=torch.long, device=self.device)
        names = self.spec.class_names
        out = []
        for label in labels:
            if isinstance(label, str) and label in names:
                out.append(names.index(label))
            elif isinstance(label, int) or (isinstance(label, str) and label.lstrip("-").isdigit()):
                index = int(label)
                if not 0 <= index < len(names):
                    raise ValueError(f"class label {index} is out of range: this model has classes 0..{len(names) - 1}"
                                     f" ({', '.join(names)})")
                out.append(index)
            else:
                raise ValueError(f"unknown class {label!r}; this model's classes are: {', '.join(names)}")
        if len(out) != n:
            raise ValueError(f"got {len(out)} labels for {n} images; give one label per image")
        return torch.tensor(out, dtype=torch.long, device=self.device)

    def initial_noise(self, n: int, seed: int, sigma_max: float) -> Tensor:
        """Noise for image ``i`` comes from seed ``seed + i``, so an image does not change with the batch size."""
        shape = (self.spec.channels, self.spec.resolution, self.spec.resolution)
        noise = [torch.randn(shape, generator=torch.Generator().manual_seed(seed + i)) for i in range(n)]
        return torch.stack(noise).to(self.device) * sigma_max

    @torch.no_grad()
    def sample(self, n: int, *, labels: list[int | str] | None = None, guidance: float = 1.0, steps: int = 32,
               sampler: str = "heun", schedule: str = "karras", seed: int = 0,
               sampler_options: dict[str, Any] | None = None, progress: Callable[[dict], None] | None = None,
               ) -> tuple[Tensor, dict[str, Any]]:
        """Generate ``n`` images in [-1, 1]; returns ``(images [n,C,H,W], parameters)``.

        ``guidance`` is the classifier-free guidance scale: 1 is the plain conditional model, 0 the unconditional
        one, larger values push samples toward their class. ``progress`` receives the sampler's per-step callback.
        """
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        sample_fn = get_sampler(sampler)
        sigmas = self.diffusion.sampling_sigmas(steps, schedule=schedule).to(self.device)
        x = self.initial_noise(n, seed, float(sigmas[0]))
        class_labels = self.labels_for(labels, n)
        denoiser: Callable = self.model
        if class_labels is not None:
            if guidance == 1.0:
                denoiser = lambda x_, s_: self.model(x_, s_, class_labels=class_labels)  # noqa: E731
            else:
                null = torch.full_like(class_labels, self.spec.num_classes)
                denoiser = guided_denoiser(self.model, {"class_labels": class_labels}, {"class_labels": null}, guidance)
        elif guidance != 1.0:
            raise ValueError("guidance needs class labels: pass labels (this model has classes "
                             f"{', '.join(self.spec.class_names) or 'none'})")
        generator = torch.Generator(device=self.device).manual_seed(seed)
        start = time.perf_counter()
        images = sample_fn(denoiser, x, sigmas, callback=progress, generator=generator, **(sampler_options or {}))
        parameters = {
            "model": self.source, "sampler": sampler, "schedule": schedule, "steps": steps,
            "nfe": nfe(sampler, steps) * (1 if guidance == 1.0 or class_labels is None else 2),
            "cfg_scale": guidance, "seed": seed, "n": n,
            "labels": None if class_labels is None else class_labels.tolist(),
            "sampler_options": sampler_options or {}, "sigma_min": self.diffusion.sigma_min,
            "sigma_max": self.diffusion.sigma_max, "noisecraft": __version__,
            "seconds": round(time.perf_counter() - start, 3),
        }
        return images.clamp(-1, 1), parameters

    def save(self, images: Tensor, parameters: dict[str, Any], out_dir: str | Path, *, nrow: int | None = None,
             row_labels: list[str] | None = None, prefix: str = "sample") -> tuple[Path, list[Path]]:
        """Write each image as a PNG (seed ``seed + i`` in its metadata) and a grid; returns (grid, files)."""
        out_dir = Path(out_dir)
        files = []
        for i, image in enumerate(images):
            image_parameters = parameters | {"seed": parameters["seed"] + i, "index": i}
            if parameters.get("labels") is not None:
                image_parameters["label"] = self.spec.class_names[parameters["labels"][i]]
            files.append(save_png(image, out_dir / f"{prefix}_{i:04d}.png", image_parameters))
        grid = save_grid(images, out_dir / f"{prefix}_grid.png", nrow=nrow or min(len(images), 10),
                         parameters=parameters, labels=row_labels, upscale=max(1, 128 // self.spec.resolution))
        return grid, files
