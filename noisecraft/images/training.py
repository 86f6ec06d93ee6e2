"""Training an image model: data spec -> dataset, spec -> model, then the shared :class:`Trainer`."""

from __future__ import annotations

import json
import os
import sys
import warnings
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from noisecraft.diffusion.config import DiffusionConfig
from noisecraft.images.data import build_image_data
from noisecraft.images.pipeline import ImageDiffusionModel, ImageModelSpec, ImagePipeline, make_loss_fn, make_spec
from noisecraft.nets.unet import unet_config
from noisecraft.shapes.world import vocabulary
from noisecraft.text.encoders import (ENCODERS, TextEncoder, is_trainable, make_text_encoder, shared_text_encoder,
                                      split_words)
from noisecraft.training.checkpoint import latest_checkpoint, load_weights, read_config
from noisecraft.training.trainer import RESUMABLE_CHANGES, TrainConfig, Trainer, TrainResult
from noisecraft.jsonconfig import from_dict
from noisecraft.training.distributed import unwrap_model

# Image-model defaults where they differ from the generic TrainConfig: EDM's preconditioning trains stably at a
# higher learning rate (EDM uses 1e-3 on CIFAR-10), which matters most for short CPU runs. The CLI shows the same.
IMAGE_TRAIN_DEFAULTS = {"lr": 1e-3, "warmup_steps": 200, "checkpoint_every": 500}

PARAMETERIZATIONS = {"edm": DiffusionConfig.edm, "eps": DiffusionConfig.ddpm, "v": DiffusionConfig.v_prediction}

# text_encoder settings: unset (None) lets captioned data choose the frozen MiniLM, so captions are never ignored
# silently; {"name": "none"} ignores them on purpose.
DEFAULT_TEXT_ENCODER = {"name": "minilm"}
NO_TEXT_ENCODER = {"name": "none"}
TEXT_ENCODER_NAMES = (*sorted(ENCODERS, key=lambda name: name != DEFAULT_TEXT_ENCODER["name"]),  # default first
                      NO_TEXT_ENCODER["name"])

# How settings are spelt on the command line (`noisecraft train --help`), so that errors name what people type.
# Settings missing here have no option and are named as config-file keys.
CLI_IMAGE_OPTIONS = {"data": "--data", "out_dir": "--out", "resolution": "--resolution", "channels": "--channels",
                     "preset": "--preset", "init_from": "--init-from", "parameterization": "--parameterization",
                     "conditional": "--unconditional", "random_flip": "--random-flip", "skip_bad": "--skip-bad",
                     "text_encoder": "--text-encoder"}
CLI_TRAIN_OPTIONS = {name: "--" + name.replace("_", "-") for name in (
    "steps", "batch_size", "lr", "warmup_steps", "lr_decay", "lr_decay_steps", "lr_min_ratio", "ema_decay",
    "grad_accum", "bf16", "num_workers", "cache_on_device", "compile", "max_minutes", "checkpoint_every",
    "sample_every", "seed")}


@dataclass
class ImageTrainConfig:
    """One JSON-able description of an image training run (``noisecraft train --config FILE`` reads this)."""

    data: str = "digits"                 # "digits", "shapes" (procedural captioned scenes) or an image folder
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
    train: dict = field(default_factory=dict)       # TrainConfig fields, over IMAGE_TRAIN_DEFAULTS
    # Text-to-image: condition on captions (shapes world, metadata.jsonl or .txt sidecars) through this encoder,
    # {"name": "learned", "dim": ..., "layers": ...} (vocabulary taken from the data) or {"name": "minilm"};
    # {"name": "none"} ignores the captions; a bare name ("minilm") means {"name": name}. None (unset):
    # {"name": "minilm"} when the data has captions.
    text_encoder: dict | None = None
    world: dict = field(default_factory=dict)       # data="shapes": ShapesWorldConfig fields (held-out sets, ...)
    num_examples: int = 200_000          # data="shapes": size of the data set, each example rendered on the fly
    # Fine-tuning: start from this model's weights (a model folder, run folder or checkpoint; EMA weights when it has
    # them). Its network, text encoder, resolution and noise parameterization are kept, so preset, unet,
    # parameterization and text_encoder must be left unset; `diffusion` still overrides training-time fields.
    init_from: str | None = None

    def __post_init__(self) -> None:
        """A bare encoder name means its defaults; a misspelt one fails here, before any data is read."""
        if isinstance(self.text_encoder, str):
            self.text_encoder = {"name": self.text_encoder}
        encoder = self.text_encoder
        if encoder is not None and not (isinstance(encoder, dict) and encoder.get("name") in TEXT_ENCODER_NAMES):
            shown = encoder.get("name") if isinstance(encoder, dict) else encoder
            raise ValueError(f"--text-encoder must be {', '.join(TEXT_ENCODER_NAMES[:-1])} or "
                             f"{TEXT_ENCODER_NAMES[-1]}, got {shown!r} (in a config file: "
                             '"text_encoder": {"name": ...})')

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ImageTrainConfig":
        return from_dict(cls, data, name="training config")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def build_dataset(config: ImageTrainConfig):
    """The training data of ``config.data`` through the image data registry (``noisecraft.images.data``).

    ``world`` is checked here because it is a training-config field that only the shapes world reads; a setting
    nothing reads would otherwise be silently ignored.
    """
    if config.world and config.data != "shapes":
        raise ValueError(f"'world' settings only apply to data='shapes', not {config.data!r}")
    return build_image_data(config)


def build_diffusion(config: ImageTrainConfig, *, conditional: bool) -> DiffusionConfig:
    """The preset of ``config.parameterization`` with ``config.diffusion`` overrides; conditional models drop their
    label 10% of the time by default, so that classifier-free guidance works out of the box."""
    if config.parameterization not in PARAMETERIZATIONS:
        raise ValueError(f"unknown parameterization {config.parameterization!r}; choose one of "
                         f"{', '.join(PARAMETERIZATIONS)}")
    base = PARAMETERIZATIONS[config.parameterization]().to_dict() | {"cond_drop_prob": 0.1 if conditional else 0.0}
    return DiffusionConfig.from_dict(base | config.diffusion)


def caption_words(captions: list[str]) -> set[str]:
    """The words of ``captions`` as the learned encoder splits them (lower-case runs of letters and digits)."""
    return {word for text in captions for word in split_words(text)}


def _refuse_flips_with_text(config: ImageTrainConfig) -> None:
    if config.random_flip:
        raise ValueError("random_flip mirrors images but not their captions ('left of' would become wrong); drop "
                         "--random-flip for text-to-image training, or ignore the captions with --text-encoder none")


def chosen_text_encoder(config: ImageTrainConfig, dataset) -> dict | None:
    """The text encoder spec a new run trains with, or None for a label / unconditional model.

    Unset, captioned data gets :data:`DEFAULT_TEXT_ENCODER`: a model that ignored the captions would train
    without error and only fail when prompted. ``conditional=False`` (``--unconditional``) means no condition.
    """
    spec = config.text_encoder
    if not config.conditional:
        if spec is not None and spec != NO_TEXT_ENCODER:
            raise ValueError(f"--unconditional trains without any condition, so --text-encoder {spec['name']} "
                             "would be ignored; drop one of them")
        return None
    if spec is None:
        return dict(DEFAULT_TEXT_ENCODER) if "caption" in dataset[0] else None
    return None if spec == NO_TEXT_ENCODER else dict(spec)


def build_text_encoder(config: ImageTrainConfig, dataset) -> TextEncoder | None:
    """The text encoder of :func:`chosen_text_encoder`, or None for label / unconditional models.

    A learned encoder gets its vocabulary from the data (the shapes grammar, or every word of the captions) and
    room for the longest caption; a frozen one is the process-wide shared instance (never part of the model).
    """
    spec = chosen_text_encoder(config, dataset)
    if spec is None:
        return None
    _refuse_flips_with_text(config)
    captions = getattr(dataset, "captions", None)
    if config.data != "shapes" and not captions:
        raise ValueError(f"--text-encoder {spec['name']} needs captions, but {config.data!r} has none: add a "
                         'metadata.jsonl ({"file_name": ..., "text": ...} per line) or a .txt file next to each '
                         "image")
    if spec.get("name") == "learned":
        if config.data == "shapes":
            spec.setdefault("vocab", list(vocabulary()))
        else:
            spec.setdefault("vocab", sorted(caption_words(captions)))
            spec.setdefault("max_tokens", max(32, 2 + max(len(split_words(t)) for t in captions)))
        return make_text_encoder(spec)
    return shared_text_encoder(spec)


def make_sample_hook(num_images_per_class: int = 8, steps: int = 32, prompts: list[str] | None = None):
    """Periodic sample grid: one row per class or per prompt (or an 8x8 grid), fixed seed so grids are comparable
    over time. Prompts are sampled with guidance 3, the usual text-to-image setting."""

    def sample_fn(ema_model: nn.Module, step: int, out_dir: Path) -> dict[str, Any]:
        pipeline = ImagePipeline(unwrap_model(ema_model), source=str(out_dir))
        names = prompts or pipeline.spec.class_names
        repeated = [name for name in names for _ in range(num_images_per_class)] if names else None
        n = len(repeated) if repeated else 64
        if prompts:
            images, parameters = pipeline.sample(n, prompt=repeated, guidance=3.0, steps=steps, seed=0)
        else:
            images, parameters = pipeline.sample(n, labels=repeated, steps=steps, seed=0)
        path = out_dir / "samples" / f"step_{step:08d}.png"
        from noisecraft.images.io import save_grid  # local: only the hook writes grids
        save_grid(images, path, nrow=num_images_per_class if names else 8, parameters=parameters | {"step": step},
                  labels=names or None, upscale=max(1, 64 // pipeline.spec.resolution))
        return {"sample_grid": str(path)}

    return sample_fn


def build_spec(config: ImageTrainConfig, dataset) -> tuple[ImageModelSpec, TextEncoder | None]:
    """The model spec of a run (new, or that of ``config.init_from`` for fine-tuning) and its text encoder."""
    image_shape = tuple(dataset[0]["image"].shape)
    channels, resolution = image_shape[0], image_shape[-1]
    if image_shape[-1] != image_shape[-2]:
        raise ValueError(f"images must be square, got {image_shape[-2]}x{image_shape[-1]}; pass --resolution N to "
                         "resize and center-crop them")
    # provenance; TrainConfig is stored beside model_config already and out_dir may move between runs
    training = {k: v for k, v in config.to_dict().items() if k not in ("train", "out_dir", "text_encoder")}
    if config.init_from is not None:
        return _fine_tune_spec(config, dataset, channels, resolution, training)
    text_encoder = build_text_encoder(config, dataset)
    # A text-to-image model conditions on captions alone, even when the folders also give class labels.
    class_names = list(getattr(dataset, "class_names", []) or []) if config.conditional and not text_encoder else []
    unet = unet_config(config.preset, **config.unet)
    diffusion = build_diffusion(config, conditional=bool(class_names) or text_encoder is not None)
    spec = make_spec(resolution=resolution, channels=channels, class_names=class_names, unet=unet,
                     diffusion=diffusion, data=config.data, text_encoder=text_encoder, training=training)
    return spec, text_encoder


def _fine_tune_spec(config: ImageTrainConfig, dataset, channels: int, resolution: int,
                    training: dict) -> tuple[ImageModelSpec, TextEncoder | None]:
    """The spec of ``config.init_from`` with this run's provenance, after checking the data fits that model."""
    source = str(config.init_from)
    defaults = ImageTrainConfig()
    set_here = [name for name in ("preset", "unet", "parameterization", "text_encoder")
                if getattr(config, name) != getattr(defaults, name)]
    if set_here:
        named = ", ".join(f"{name} ({CLI_IMAGE_OPTIONS[name]})" if name in CLI_IMAGE_OPTIONS else name
                          for name in set_here)
        raise ValueError(f"--init-from {source} keeps that model's network and text encoder; remove {named} from "
                         "the settings (or train a new model without --init-from)")
    stored = read_config(source).get("model_config") or {}
    spec = ImageModelSpec.from_dict(stored)
    if (channels, resolution) != (spec.channels, spec.resolution):
        raise ValueError(f"{source} makes {spec.channels}x{spec.resolution}x{spec.resolution} images but the data "
                         f"gives {channels}x{resolution}x{resolution}; pass --resolution {spec.resolution}"
                         + (f" and --channels {spec.channels}" if channels != spec.channels else ""))
    captions = getattr(dataset, "captions", None) or []
    if spec.text_encoder is None and config.data == "shapes":
        raise ValueError(f"{source} takes no text, but the shapes world trains text-to-image models; fine-tune a "
                         "text-to-image model, or train a new one without --init-from")
    if spec.text_encoder is not None and config.data != "shapes" and not captions:
        raise ValueError(f"{source} is a text-to-image model, but {config.data!r} has no captions: add a "
                         'metadata.jsonl ({"file_name": ..., "text": ...} per line) or a .txt file next to each image')
    data_classes = list(getattr(dataset, "class_names", []) or [])
    if spec.class_names and spec.class_names != data_classes:
        raise ValueError(f"{source} knows the classes {spec.class_names} but the data has {data_classes}; "
                         "fine-tuning keeps the classes, so use folders with the same names")
    text_encoder = None
    if spec.text_encoder is not None:
        _refuse_flips_with_text(config)
        text_encoder = (make_text_encoder(spec.text_encoder) if is_trainable(spec.text_encoder)
                        else shared_text_encoder(spec.text_encoder))
        vocab = set(spec.text_encoder.get("vocab") or [])
        unknown = sorted(caption_words(captions) - vocab) if vocab else []
        if unknown:
            warnings.warn(f"{len(unknown)} caption words are outside {source}'s vocabulary and will read as <unk>: "
                          f"{', '.join(unknown[:12])}{' ...' if len(unknown) > 12 else ''}", stacklevel=3)
    diffusion = DiffusionConfig.from_dict(spec.diffusion | config.diffusion).to_dict()
    return replace(spec, diffusion=diffusion, data=config.data, training=training), text_encoder


# --- resuming ---------------------------------------------------------------------------------------------------

# What a resumed run keeps by refusing a change of each setting (the rest of the image settings: "settings").
_KEPT_BY_RESUME = {"preset": "network", "unet": "network", "resolution": "network", "channels": "network",
                   "conditional": "network", "text_encoder": "network", "init_from": "network",
                   "parameterization": "noise process", "diffusion": "noise process", "data": "data",
                   "random_flip": "data", "skip_bad": "data", "world": "data", "num_examples": "data"}


def cli_option(name: str, value: Any, *, train: bool = False) -> str:
    """A setting as it is typed on the command line ("--preset tiny", "--bf16", "--unconditional"), or as a
    config-file key ("unet={...}", "train.weight_decay=0.1") when ``noisecraft train`` has no option for it."""
    flag = (CLI_TRAIN_OPTIONS if train else CLI_IMAGE_OPTIONS).get(name)
    if flag is None:
        return f"{'train.' if train else ''}{name}={json.dumps(value)}"
    if name == "conditional":  # the option says the opposite of the setting
        value = not value
    if isinstance(value, bool):
        return flag if value else f"--no-{flag[2:]}"
    return f"{flag} {value['name'] if name == 'text_encoder' else value}"


def _agrees(given: Any, stored: Any) -> bool:
    """Whether a setting given on resume agrees with the run's: equal as JSON, or, for a dict (unet, text_encoder,
    ...), equal in every key given (a stored text encoder also records the vocabulary it took from the data)."""
    given, stored = json.loads(json.dumps(given)), json.loads(json.dumps(stored))
    if isinstance(given, dict) and isinstance(stored, dict):
        return all(stored.get(key) == value for key, value in given.items())
    return given == stored


def _refuse_changes(given: dict, stored: dict, *, train: bool) -> None:
    """A one-line error naming the first option whose given value differs from the run's and may not change."""
    for name, value in given.items():
        if (train and name in RESUMABLE_CHANGES) or _agrees(value, stored.get(name)):
            continue
        if train:
            changeable = ", ".join(flag for key, flag in CLI_TRAIN_OPTIONS.items() if key in RESUMABLE_CHANGES)
            why = f"a resumed run keeps its optimisation settings (only {changeable} may change)"
        else:
            why = f"a resumed run keeps its {_KEPT_BY_RESUME.get(name, 'settings')}"
        raise ValueError(f"{cli_option(name, value, train=train)} differs from the run's "
                         f"{_shown(name, stored.get(name), train=train)}; {why}; train a new --out to change it")


def _shown(name: str, value: Any, *, train: bool) -> str:
    """A run's setting in an error message: a switch as its option ("--no-bf16"), else the name and the value
    ("preset tiny", "resolution unset", "text_encoder minilm", "unet {...}")."""
    if isinstance(value, bool):
        return cli_option(name, value, train=train)
    if value is None:
        return f"{name} unset"
    if name == "text_encoder" and isinstance(value, dict):
        return f"{name} {value.get('name')}"
    return f"{name} {value if isinstance(value, str) else json.dumps(value)}"


def _given_settings(config: ImageTrainConfig | dict) -> dict[str, Any]:
    """The settings a caller chose: a dict's keys, or the fields of an ImageTrainConfig that differ from the defaults
    (a dataclass cannot tell an explicit default from an omitted one)."""
    if isinstance(config, dict):
        ImageTrainConfig.from_dict(config)  # unknown keys and bad values fail here, before they could be dropped
        return dict(config)
    defaults = ImageTrainConfig().to_dict()
    return {name: value for name, value in config.to_dict().items() if value != defaults[name]}


def stored_settings(out_dir: str | Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """The image settings and TrainConfig of the run in ``out_dir``, from the checkpoint a resume continues.

    The model config keeps the run's ImageTrainConfig as ``training`` (without ``train``, ``out_dir`` and
    ``text_encoder``); the text encoder is the built one (a learned encoder's vocabulary included), and "none" when
    the model takes no text, so that a resumed run never picks an encoder of its own. A fine-tuned run's encoder is
    its source model's, which ``init_from`` brings back.
    """
    checkpoint = latest_checkpoint(out_dir)
    if checkpoint is None:
        raise FileNotFoundError(f"cannot resume: {out_dir} holds no checkpoint; start without --resume (Python: "
                                "resume=False)")
    saved = read_config(checkpoint)
    model_config = saved.get("model_config") or {}
    image = dict(model_config.get("training") or {})
    if image.get("init_from") is None:
        image["text_encoder"] = model_config.get("text_encoder") or NO_TEXT_ENCODER
    return image, dict(saved.get("train_config") or {})


def resumed_config(config: ImageTrainConfig | dict) -> ImageTrainConfig:
    """The config that continues the run in ``config.out_dir``: its stored settings, overridden only by the settings
    given here that may change on resume (steps, max_minutes, the learning-rate decay, ...; the trainer's
    ``RESUMABLE_CHANGES``). Any other setting given must agree with the run's, else a one-line error names it."""
    given = _given_settings(config)
    out_dir = str(given.pop("out_dir", ImageTrainConfig().out_dir))
    given_train = dict(given.pop("train", None) or {})
    image, train = stored_settings(out_dir)
    _refuse_changes(given, image, train=False)
    _refuse_changes(given_train, train, train=True)
    return ImageTrainConfig.from_dict(image | {"out_dir": out_dir, "train": train | given_train})


def _notice(message: str, *, progress: bool) -> None:
    """One line on stderr for the person watching a run (rank 0 only; silent with ``progress=False``)."""
    if progress and os.environ.get("RANK", "0") == "0":
        print(message, file=sys.stderr, flush=True)


def train_images(config: ImageTrainConfig | dict, *, resume: bool = False, progress: bool = True) -> TrainResult:
    """Train an image diffusion model; the run folder becomes a loadable model (``noisecraft.load(out_dir)``).

    With ``config.init_from`` the run fine-tunes that model: same network, its weights as the starting point.
    ``resume=True`` continues the run in ``config.out_dir`` with its own stored settings: give only ``out_dir`` and
    what may change (``train.steps``, ``train.max_minutes``, the decay, ...), see :func:`resumed_config`.
    """
    if resume:
        config = resumed_config(config)
    elif isinstance(config, dict):
        config = ImageTrainConfig.from_dict(config)
    train_config = TrainConfig.from_dict(IMAGE_TRAIN_DEFAULTS | config.train)
    dataset = build_dataset(config)
    spec, text_encoder = build_spec(config, dataset)
    if config.text_encoder is None and config.init_from is None and spec.text_encoder is not None:
        _notice("the data has captions: training a text-to-image model with the frozen MiniLM text encoder "
                "(--text-encoder learned or none to choose otherwise)", progress=progress)
    torch.manual_seed(train_config.seed)  # network initialisation
    model = ImageDiffusionModel(spec)
    if config.init_from is not None and not resume:  # a resumed run's checkpoint holds the weights
        load_weights(model, config.init_from, use_ema=True)
    prompts = sorted({dataset[i]["caption"] for i in range(min(len(dataset), 6))}) if text_encoder else None
    trainer = Trainer(model, make_loss_fn(spec, random_flip=config.random_flip), dataset, train_config,
                      config.out_dir, model_config=spec.to_dict(),
                      sample_fn=make_sample_hook(steps=config.sample_steps, prompts=prompts), progress=progress)
    return trainer.fit(resume=resume)


def make_tiny_model(out_dir: str | Path) -> Path:
    """A tiny class-conditional digits model (8x8, two training steps; seconds): for the contract test."""
    train_images({"data": "digits", "out_dir": str(out_dir), "resolution": 8, "preset": "tiny", "sample_steps": 2,
                  "train": {"steps": 2, "batch_size": 8, "checkpoint_every": 0, "sample_every": 0, "log_every": 1}},
                 progress=False)
    return Path(out_dir)
