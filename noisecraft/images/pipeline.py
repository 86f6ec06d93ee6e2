"""The image modality: binds the U-Net, the shared engine and the shared trainer.

This layer only does what is specific to images: build the network from a JSON spec, turn a dataset item into
``x0`` plus conditions, draw starting noise of image shape, and write PNGs. The math lives in
:mod:`noisecraft.diffusion`, the loop in :mod:`noisecraft.training`.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from torch import Tensor, nn

from noisecraft import __version__
from noisecraft.diffusion.config import DiffusionConfig
from noisecraft.diffusion.editing import inpainting_denoiser, sdedit_sigmas, sdedit_start
from noisecraft.diffusion.guidance import guided_denoiser
from noisecraft.device import resolve_device
from noisecraft.diffusion.samplers import SAMPLERS, get_sampler, nfe
from noisecraft.diffusion.schedules import SCHEDULES
from noisecraft.images.data import random_hflip
from noisecraft.images.io import load_image, load_mask, save_grid, save_png
from noisecraft.images.text2image import text_guided_denoiser
from noisecraft.nets.registry import build_network
from noisecraft.nets.unet import UNetConfig
from noisecraft.text.encoders import TextEncoder, is_trainable, make_text_encoder, shared_text_encoder
from noisecraft.training.checkpoint import load_weights, read_config, resolve_model_dir
from noisecraft.training.distributed import unwrap_model
from noisecraft.jsonconfig import from_dict
from noisecraft.protocol import Generation, Param, ParameterError, Pipeline, StepReporter

MODEL_KIND = "image"


@dataclass
class ImageModelSpec:
    """Everything needed to rebuild an image model; stored as ``model_config`` in ``config.json``.

    ``shape`` is one image, ``[channels, height, width]``; ``network`` names a network of
    :mod:`noisecraft.nets.registry` and ``net`` is its config. Folders written before these fields existed
    (``resolution``, ``channels``, ``unet``) are read as ``unet2d`` models of square images.
    """

    shape: list[int]
    net: dict
    diffusion: dict
    network: str = "unet2d"
    class_names: list[str] = field(default_factory=list)
    data: str = ""  # provenance only: what the model was trained on
    training: dict = field(default_factory=dict)  # provenance only: the run's full training config
    text_encoder: dict | None = None  # TextEncoder.to_dict() of a text-to-image model; None without text
    # A distilled few-step student (noisecraft.distill): method, teacher, and its sampler, schedule and steps,
    # which become this model's sampling defaults. None for a model trained from data.
    distillation: dict | None = None
    kind: str = MODEL_KIND

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def channels(self) -> int:
        return self.shape[0]

    @property
    def resolution(self) -> int:
        """The side of a square image (the U-Net's one size); an error for other shapes."""
        if self.shape[1] != self.shape[2]:
            raise ValueError(f"this model makes {self.shape[2]}x{self.shape[1]} images, which have no single "
                             "resolution; use spec.shape")
        return self.shape[1]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ImageModelSpec":
        if data.get("kind", MODEL_KIND) != MODEL_KIND:
            raise ValueError(f"this is a {data.get('kind')!r} model, not an image model")
        data = dict(data)
        if "unet" in data:  # the layout before networks were named
            legacy = {key: data.pop(key) for key in ("resolution", "channels", "unet") if key in data}
            data |= {"network": "unet2d", "net": legacy.get("unet"),
                     "shape": [legacy.get("channels"), legacy.get("resolution"), legacy.get("resolution")]}
        spec = from_dict(cls, data, name="image model")
        if len(spec.shape) != 3 or not all(isinstance(n, int) and n > 0 for n in spec.shape):
            raise ValueError(f"image model shape must be [channels, height, width] of positive integers, "
                             f"got {spec.shape}")
        return spec


class ImageDiffusionModel(nn.Module):
    """The trainable denoiser ``D(x, sigma, class_labels=None, context=None, context_mask=None)``: a U-Net behind
    the configured preconditioner, plus the text encoder of a text-to-image model.

    A trainable text encoder (``LearnedTokenEncoder``) is a sub-module, so it is optimised, averaged and saved with
    the U-Net. A frozen one (``MiniLMEncoder``) is deliberately *not*: it is looked up in a process-wide registry
    by its spec (:func:`~noisecraft.text.encoders.shared_text_encoder`), so its weights never enter the state dict,
    the optimizer or the EMA copy, and its per-prompt cache is shared by the model and its EMA.
    """

    def __init__(self, spec: ImageModelSpec):
        super().__init__()
        self.spec = spec
        self.diffusion = DiffusionConfig.from_dict(spec.diffusion)
        # The U-Net is registered once, inside the preconditioner, so each weight is saved once.
        self.denoiser = self.diffusion.make_denoiser(build_network(spec.network, spec.net))
        self.text_encoder: TextEncoder | None = None
        if spec.text_encoder is not None:
            if is_trainable(spec.text_encoder):
                self.text_encoder = make_text_encoder(spec.text_encoder)
            if self.net.config.context_dim is None:
                raise ValueError("a text-conditioned model needs a network with cross-attention (net.context_dim)")

    @property
    def net(self) -> nn.Module:
        """The raw network F(x_in, c_noise, **cond) inside the preconditioner."""
        return self.denoiser.net

    def forward(self, x: Tensor, sigma: float | Tensor, **cond: Tensor) -> Tensor:
        return self.denoiser(x, sigma, **cond)

    def encode_text(self, prompts: list[str]) -> tuple[Tensor, Tensor]:
        """``context [B, T, D]`` and ``context_mask [B, T]`` (True = real token) of ``prompts``, on the model's
        device, padded to the longest prompt: the cross-attention condition of the U-Net."""
        device = next(self.denoiser.parameters()).device
        tokens, mask, _ = self._text_encoder(device).encode(prompts)
        return tokens.to(device), mask.to(device)

    def unknown_words(self, prompts: list[str]) -> list[str]:
        """Words of ``prompts`` that the text encoder cannot represent (outside a learned encoder's vocabulary)."""
        return self._text_encoder().unknown_words(prompts)

    def _text_encoder(self, device: torch.device | str = "cpu") -> TextEncoder:
        """The trainable encoder (a sub-module), or the shared frozen one that runs on ``device`` (where the U-Net
        runs: a GPU, not the CPU)."""
        if self.spec.text_encoder is None:
            raise ValueError("this model takes no text: it was not trained with a text encoder")
        if self.text_encoder is not None:
            return self.text_encoder
        return shared_text_encoder(self.spec.text_encoder, device)

    def null_text(self, length: int) -> dict[str, Tensor]:
        """One example's "no text" condition of ``length`` tokens: a fully masked context, so the U-Net's
        cross-attention sees only its learned null token (the unconditional branch of classifier-free guidance)."""
        device = next(self.denoiser.parameters()).device
        return {"context": torch.zeros(length, self.net.config.context_dim, device=device),
                "context_mask": torch.zeros(length, dtype=torch.bool, device=device)}


def tensor_sha256(tensor: Tensor) -> str:
    """Content hash of a tensor's values (float32, contiguous): what an edited image started from."""
    return hashlib.sha256(tensor.detach().to("cpu", torch.float32).contiguous().numpy().tobytes()).hexdigest()


def make_spec(*, resolution: int, channels: int, class_names: list[str], unet: UNetConfig,
              diffusion: DiffusionConfig, data: str = "", training: dict | None = None,
              text_encoder: TextEncoder | None = None) -> ImageModelSpec:
    """Spec with the U-Net's channel / class / resolution / context fields forced to agree with the data and the
    text encoder (whose ``to_dict()`` is stored, so that loading rebuilds it)."""
    unet_dict = unet.to_dict() | {"in_channels": channels, "out_channels": None, "resolution": resolution,
                                  "num_classes": len(class_names),
                                  "context_dim": text_encoder.dim if text_encoder else unet.context_dim}
    return ImageModelSpec(shape=[channels, resolution, resolution], network="unet2d", net=unet_dict,
                          diffusion=diffusion.to_dict(), class_names=list(class_names), data=data,
                          training=training or {}, text_encoder=text_encoder.to_dict() if text_encoder else None)


def make_loss_fn(spec: ImageModelSpec, *, random_flip: bool = False) -> Callable:
    """``loss_fn(model, batch, generator) -> [B]`` for the shared trainer.

    Class labels are replaced by the "no label" class, captions by the fully masked context, with probability
    ``cond_drop_prob`` (inside ``DiffusionConfig.loss``) so that one network learns both the conditional and the
    unconditional denoiser (classifier-free guidance, Ho & Salimans 2022, Alg. 1).
    """
    diffusion = DiffusionConfig.from_dict(spec.diffusion)
    null_label = spec.num_classes

    def loss_fn(model: nn.Module, batch: dict[str, Tensor], generator: torch.Generator) -> Tensor:
        x0 = batch["image"]
        if random_flip:
            x0 = random_hflip(x0, generator=generator)
        if spec.text_encoder is not None:
            # Encoded here, not in forward: a learned encoder's gradients flow through `context`.
            text_model = unwrap_model(model)
            context, context_mask = text_model.encode_text(list(batch["caption"]))
            return diffusion.loss(model, x0, generator=generator, null_cond=text_model.null_text(context.shape[1]),
                                  context=context, context_mask=context_mask)
        if not spec.num_classes:
            return diffusion.loss(model, x0, generator=generator)
        null = {"class_labels": torch.tensor(null_label, device=x0.device)}
        return diffusion.loss(model, x0, generator=generator, null_cond=null, class_labels=batch["label"].long())

    return loss_fn


# Sampling defaults: text-to-image models are sampled guided (the shipped model's benchmark settings).
TEXT_DEFAULTS = {"guidance": 3.0, "steps": 12, "sampler": "heun"}
LABEL_DEFAULTS = {"guidance": 1.0, "steps": 32, "sampler": "heun"}
MAX_IMAGES = 256


class _WithGuidance:
    """A distilled student with its guidance input bound to the scale ``w`` (LCM's knob); every other attribute is
    the model's, so the text-to-image and label guidance code uses it as it uses the model."""

    def __init__(self, model: ImageDiffusionModel, w: float):
        self._model, self._w = model, float(w)

    def __call__(self, x: Tensor, sigma, **cond: Tensor) -> Tensor:
        return self._model(x, sigma, guidance=self._w, **cond)

    def __getattr__(self, name: str):
        return getattr(self._model, name)


class ImagePipeline(Pipeline):
    """A trained image model ready to sample: ``ImagePipeline.load(path).sample(n, labels=..., seed=...)``, or
    through the pipeline protocol, ``.generate({"labels": ["7"], "n": 4}, seed=0)`` (:mod:`noisecraft.protocol`)."""

    modality = "image"

    def __init__(self, model: ImageDiffusionModel, *, source: str = ""):
        self.model = model.eval().requires_grad_(False)
        self.spec = model.spec
        self.diffusion = model.diffusion
        self.source = source

    @classmethod
    def load(cls, path: str | Path, *, use_ema: bool = True, device: str | torch.device = "cpu") -> "ImagePipeline":
        """Load a run folder, its final export or one checkpoint folder (EMA weights unless ``use_ema=False``)."""
        device = resolve_device(device)
        model_dir = resolve_model_dir(path)
        config = read_config(model_dir)
        spec = ImageModelSpec.from_dict(config["model_config"])
        model = ImageDiffusionModel(spec)
        load_weights(model, model_dir, use_ema=use_ema)
        return cls(model.to(device), source=str(model_dir))

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def sampling_defaults(self) -> dict[str, Any]:
        """steps, sampler, schedule and guidance used when a caller leaves them out: a distilled student's own
        few-step settings, else the defaults of text-to-image or label models."""
        defaults = {**(TEXT_DEFAULTS if self.spec.text_encoder is not None else LABEL_DEFAULTS), "schedule": "karras"}
        if self.spec.distillation:
            defaults |= {key: self.spec.distillation[key] for key in ("steps", "sampler", "guidance", "schedule")}
        return defaults

    # --- the pipeline protocol (noisecraft.protocol) ---

    def parameters(self) -> list[Param]:
        text = self.spec.text_encoder is not None
        defaults = self.sampling_defaults()
        params = [
            Param("n", "int", 4 if text else 16, "Number of images; image i uses seed + i.", 1, MAX_IMAGES),
            Param("steps", "int", defaults["steps"], "Sampler steps.", 1, 1000),
            Param("sampler", "choice", defaults["sampler"], "Sampler (k-diffusion names).",
                  choices=tuple(SAMPLERS)),
            Param("schedule", "choice", defaults["schedule"], "Sigma schedule.", choices=tuple(SCHEDULES)),
        ]
        if text:
            return params + [
                Param("prompt", "str", None, 'What to draw; compose with AND and ":weight".', 1, 1000,
                      required=True),
                Param("negative_prompt", "str", None, "What to steer away from (replaces the unconditional "
                                                      "branch).", 1, 1000),
                Param("guidance", "float", defaults["guidance"], "Classifier-free guidance scale (1 = plain "
                                                                 "conditional).", 0.0, 30.0),
                Param("init_image", "image", None, "img2img (SDEdit): start from this image."),
                Param("mask", "image", None, "Inpainting mask for init_image: white = regenerate."),
                Param("strength", "float", None, "How much of init_image to redo: 0 keeps it, 1 ignores it "
                                                 "(default 0.6; 1 with a mask).", 0.0, 1.0),
                Param("resize", "bool", False, "Scale and centre-crop init_image / mask to the model's size."),
            ]
        if self.spec.class_names:
            classes = ", ".join(self.spec.class_names)
            params += [
                Param("labels", "strings", None, f"Class names or indices ({classes}): one for all images or one "
                                                 "per image; none = unconditional."),
                Param("guidance", "float", defaults["guidance"], "Classifier-free guidance scale (needs labels).",
                      0.0, 30.0),
            ]
        return params

    def _generate(self, params: dict[str, Any], *, seed: int, progress, cancel) -> Generation:
        reporter = StepReporter(params["steps"], progress, cancel)
        reporter.check_cancel()
        options = {key: params[key] for key in ("steps", "sampler", "schedule")}
        options["guidance"] = params.get("guidance", 1.0)
        n = params["n"]
        files = {}
        if self.spec.text_encoder is not None:
            options |= {"prompt": params["prompt"], "negative_prompt": params["negative_prompt"],
                        "strength": params["strength"]}
            options["init_image"], files["init_image"] = self._read_image(params, "init_image", n)
            options["mask"], files["mask"] = self._read_image(params, "mask", n)
            if options["mask"] is not None and options["init_image"] is None:
                raise ParameterError("mask", "needs init_image (the picture to inpaint)")
        elif params.get("labels"):
            labels = params["labels"]
            if len(labels) not in (1, n):
                raise ParameterError("labels", f"give one label for all {n} images or one per image; got "
                                               f"{len(labels)}")
            options["labels"] = labels * n if len(labels) == 1 else labels
        images, record = self.sample(n, seed=seed, progress=lambda info: reporter.step(total=info["total"]),
                                     **options)
        record |= {key: value for key, value in files.items() if value is not None}
        return Generation(images, record)

    def _read_image(self, params: dict[str, Any], name: str, n: int) -> tuple[Tensor | None, dict | None]:
        """The image parameter ``name`` as a tensor, and for a file its path and content hash (the record)."""
        value = params.get(name)
        if value is None or isinstance(value, Tensor):
            return value, None
        if isinstance(value, (str, Path)):
            size, resize = self.spec.resolution, params.get("resize", False)
            tensor = (load_mask(value, size, resize=resize) if name == "mask" else
                      load_image(value, size=size, channels=self.spec.channels, resize=resize,
                                 role=name.replace("_", " ")))
            return tensor, {"path": str(value), "sha256": hashlib.sha256(Path(value).read_bytes()).hexdigest()}
        from PIL import Image  # a PIL image: the same conversion as a file's

        if isinstance(value, Image.Image):
            from noisecraft.images.io import pil_to_uint8, uint8_to_float

            pixels = pil_to_uint8(value.convert("L" if name == "mask" or self.spec.channels == 1 else "RGB"))
            return (pixels >= 128 if name == "mask" else uint8_to_float(pixels)), None
        raise ParameterError(name, f"must be an image file path, a PIL image or a tensor; got {type(value).__name__}")

    def save_outputs(self, generation: Generation, out_dir: str | Path) -> list[Path]:
        grid, files = self.save(generation.items, generation.parameters, out_dir)
        return files + [grid]

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
        shape = tuple(self.spec.shape)
        noise = [torch.randn(shape, generator=torch.Generator().manual_seed(seed + i)) for i in range(n)]
        return torch.stack(noise).to(self.device) * sigma_max

    @torch.no_grad()
    def sample(self, n: int, *, labels: list[int | str] | None = None, guidance: float = 1.0,
               steps: int | None = None, sampler: str | None = None, schedule: str | None = None, seed: int = 0,
               sampler_options: dict[str, Any] | None = None, progress: Callable[[dict], None] | None = None,
               prompt: str | list[str] | None = None, negative_prompt: str | None = None,
               init_image: Tensor | None = None, strength: float | None = None, mask: Tensor | None = None,
               ) -> tuple[Tensor, dict[str, Any]]:
        """Generate ``n`` images in [-1, 1]; returns ``(images [n,C,H,W], parameters)``.

        ``guidance`` is the classifier-free guidance scale: 1 is the plain conditional model, 0 the unconditional
        one, larger values push samples toward their class or prompt. ``progress`` receives the sampler's
        per-step callback info, plus ``"total"``: the number of steps this call takes.

        Text-to-image models take ``prompt`` (one prompt for all images, which may compose concepts with ``AND``
        and ``:weight``, or one plain prompt per image) and ``negative_prompt`` (replaces the unconditional
        branch); see :mod:`noisecraft.images.text2image`.
        ``init_image`` (``[C, H, W]`` or ``[n, C, H, W]`` in [-1, 1]) turns sampling into SDEdit with ``strength``
        (default 0.6; 0 returns the image, 1 ignores it); with ``mask`` (``[H, W]``, ``[1, H, W]`` or
        ``[n, 1, H, W]``, 1 = regenerate) it inpaints instead (default strength 1). See
        :mod:`noisecraft.diffusion.editing`.
        ``steps``, ``sampler`` and ``schedule`` left as None take :meth:`sampling_defaults` (32 Heun steps on the
        Karras schedule, or a distilled student's own few-step sampler).
        """
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        defaults = self.sampling_defaults() | ({} if self.spec.distillation else {"steps": 32, "sampler": "heun"})
        steps = defaults["steps"] if steps is None else steps
        sampler = defaults["sampler"] if sampler is None else sampler
        schedule = defaults["schedule"] if schedule is None else schedule
        sample_fn = get_sampler(sampler)
        sigmas = self.diffusion.sampling_sigmas(steps, schedule=schedule).to(self.device)
        x = self.initial_noise(n, seed, float(sigmas[0]))
        denoiser, evaluations, record = self._conditioned_denoiser(n, labels, prompt, negative_prompt, guidance)
        if init_image is not None:
            known = self._check_init_image(init_image, n)
            noise = self.initial_noise(n, seed, 1.0)
            if mask is not None:
                denoiser = inpainting_denoiser(denoiser, known, self._check_mask(mask, n), noise)
            strength = (0.6 if mask is None else 1.0) if strength is None else strength
            sigmas = sdedit_sigmas(sigmas, strength)
            x = sdedit_start(known, sigmas[0], noise)
            record |= {"strength": strength, "inpainting": mask is not None}
        elif mask is not None or strength is not None:
            raise ValueError("mask and strength edit an image: pass init_image too")
        if init_image is not None:
            record["init_image_sha256"] = tensor_sha256(init_image)
            if mask is not None:
                record["mask_sha256"] = tensor_sha256(mask)
        generator = torch.Generator(device=self.device).manual_seed(seed)
        done = len(sigmas) - 1
        callback = None if progress is None else (lambda info: progress(info | {"total": done}))
        images = sample_fn(denoiser, x, sigmas, callback=callback, generator=generator,
                           **(sampler_options or {})) if done else x  # strength 0: no step to take
        parameters = {
            "model": self.source, "sampler": sampler, "schedule": schedule, "steps": steps,
            "nfe": nfe(sampler, done) * evaluations if done else 0,
            "cfg_scale": guidance, "seed": seed, "n": n, **record,
            "sampler_options": sampler_options or {}, "sigma_min": self.diffusion.sigma_min,
            "sigma_max": self.diffusion.sigma_max, "noisecraft": __version__,
        }  # no timings: the same request and seed give the same record, and so the same PNG bytes
        return images.clamp(-1, 1), parameters

    def _conditioned_denoiser(self, n: int, labels, prompt, negative_prompt, guidance: float,
                              ) -> tuple[Callable, int, dict[str, Any]]:
        """``(denoiser(x, sigma), network evaluations per call, metadata)`` for labels, a prompt or neither."""
        model = self.model
        if getattr(getattr(self.model.net, "config", None), "guidance_embedding", False):
            model = _WithGuidance(self.model, guidance)  # a distilled student: the scale is also a network input
        if self.spec.text_encoder is not None:
            if labels is not None:
                raise ValueError("this is a text-to-image model: pass a prompt, not class labels")
            if prompt is None:
                raise ValueError('this is a text-to-image model: pass a prompt, e.g. prompt="a small red circle"')
            denoiser, evaluations, record = text_guided_denoiser(model, prompt, n, guidance=guidance,
                                                                 negative_prompt=negative_prompt)
            return denoiser, evaluations, {"prompt": prompt, **record}
        if prompt is not None or negative_prompt is not None:
            raise ValueError("this model was not trained with text: it takes no prompt"
                             + (" (use labels=...)" if self.spec.num_classes else ""))
        class_labels = self.labels_for(labels, n)
        record = {"labels": None if class_labels is None else class_labels.tolist()}
        if class_labels is None:
            if guidance != 1.0:
                raise ValueError("guidance needs class labels: pass labels (this model has classes "
                                 f"{', '.join(self.spec.class_names) or 'none'})")
            return model, 1, record
        if guidance == 1.0:
            return (lambda x_, s_: model(x_, s_, class_labels=class_labels)), 1, record
        null = torch.full_like(class_labels, self.spec.num_classes)
        return guided_denoiser(model, {"class_labels": class_labels}, {"class_labels": null}, guidance), 2, record

    def _check_init_image(self, image: Tensor, n: int) -> Tensor:
        """``image`` as ``[n, C, H, W]`` on the model's device, or a clear error naming the expected shape."""
        expected = (self.spec.channels, self.spec.resolution, self.spec.resolution)
        if not isinstance(image, Tensor) or tuple(image.shape[-3:]) != expected or image.ndim not in (3, 4) \
                or (image.ndim == 4 and image.shape[0] not in (1, n)):
            got = tuple(image.shape) if isinstance(image, Tensor) else type(image).__name__
            raise ValueError(f"the init image must be {expected[2]}x{expected[1]} with {expected[0]} channels "
                             f"(a tensor [C, H, W] = {list(expected)} in [-1, 1]) for this model; got {got}")
        image = image.to(self.device, torch.float32)
        return image.expand(n, *expected) if image.ndim == 3 else image.expand(n, *image.shape[1:])

    def _check_mask(self, mask: Tensor, n: int) -> Tensor:
        """``mask`` as ``[n, 1, H, W]`` floats in [0, 1] (1 = regenerate), or a clear error."""
        size = (self.spec.resolution, self.spec.resolution)
        leading = tuple(mask.shape[:-2]) if isinstance(mask, Tensor) else None
        if leading not in ((), (1,), (1, 1), (n, 1)) or tuple(mask.shape[-2:]) != size:
            got = tuple(mask.shape) if isinstance(mask, Tensor) else type(mask).__name__
            raise ValueError(f"the mask must be {size[1]}x{size[0]} pixels with one channel (white = regenerate) "
                             f"for this model; got shape {got}")
        mask = mask.to(self.device, torch.float32)
        return mask.reshape(-1, 1, *size).expand(n, 1, *size)

    def save(self, images: Tensor, parameters: dict[str, Any], out_dir: str | Path, *, nrow: int | None = None,
             row_labels: list[str] | None = None, prefix: str = "sample") -> tuple[Path, list[Path]]:
        """Write each image as a PNG (seed ``seed + i`` in its metadata) and a grid; returns (grid, files)."""
        out_dir = Path(out_dir)
        files = []
        for i, image in enumerate(images):
            image_parameters = parameters | {"seed": parameters["seed"] + i, "index": i}
            if parameters.get("labels") is not None:
                index = parameters["labels"][i]  # == num_classes: the "no label" class (sampled unconditionally)
                names = self.spec.class_names
                image_parameters["label"] = names[index] if index < len(names) else None
            if isinstance(parameters.get("prompt"), list):
                image_parameters["prompt"] = parameters["prompt"][i]
            files.append(save_png(image, out_dir / f"{prefix}_{i:04d}.png", image_parameters))
        grid = save_grid(images, out_dir / f"{prefix}_grid.png", nrow=nrow or min(len(images), 10),
                         parameters=parameters, labels=row_labels, upscale=max(1, 128 // self.spec.resolution))
        return grid, files
