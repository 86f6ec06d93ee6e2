"""Training a video model: the moving-shapes world (clips plus still images) or a clip folder -> a space-time U-Net
grown from the shipped text-to-image model (by default) -> the shared :class:`Trainer`.

``train_video({"out_dir": "runs/video", "minutes": 45})`` grows from ``noisecraft/assets/shapes_t2i``: its U-Net
initialises the spatial layers, its text encoder (the frozen MiniLM, or a learned encoder's weights) is the video
model's, its noise parameterization is kept; temporal layers start as the identity. ``"grow_from": None`` trains the
same kind of network from scratch (``preset`` + ``net`` overrides, ``text_encoder``).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import torch

from noisecraft.diffusion.config import DiffusionConfig
from noisecraft.nets.registry import network_config
from noisecraft.text.encoders import make_text_encoder, shared_text_encoder, split_words
from noisecraft.training.checkpoint import read_config
from noisecraft.training.runs import check_positive_ints, run_checkpoint, train_config_for, with_defaults
from noisecraft.training.trainer import Trainer

from .data import build_video_data
from .model import MAX_FRAMES, VideoDiffusionModel, VideoModelSpec, grow_from_image_model, make_loss_fn

SHIPPED_IMAGE_MODEL = Path(__file__).resolve().parent.parent / "assets" / "shapes_t2i"
DEFAULTS: dict[str, Any] = {
    "data": "world", "out_dir": None, "frames": 8, "max_frames": MAX_FRAMES, "grow_from": str(SHIPPED_IMAGE_MODEL),
    "preset": "small", "net": {}, "temporal": {}, "text_encoder": None, "resolution": 32, "world": {},
    "joint_images": True, "freeze_spatial": False, "num_examples": 200_000, "skip_bad": False, "steps": None,
    "minutes": None,
    "batch_size": 8, "lr": 5e-4, "seed": 0, "diffusion": {}, "train": {},
}
SCRATCH_ONLY = ("preset", "net", "text_encoder")  # a grown model takes these from its image model


def check_config(config: dict[str, Any]) -> dict[str, Any]:
    """``config`` over :data:`DEFAULTS`, with unknown keys and bad values named in one-line errors."""
    given = config
    config = with_defaults(config, DEFAULTS, what="video training")
    check_positive_ints(config, ("frames", "max_frames", "batch_size", "num_examples", "resolution"))
    if config["frames"] > config["max_frames"]:
        raise ValueError(f"frames ({config['frames']}) is above max_frames ({config['max_frames']})")
    if config["grow_from"] in ("none", ""):
        config["grow_from"] = None
    if config["grow_from"] is not None:
        if not (Path(config["grow_from"]) / "config.json").is_file():
            raise FileNotFoundError(f"--grow-from {config['grow_from']}: not a model folder (no config.json); "
                                    "pass a text-to-image model folder, or --scratch")
        clash = [key for key in SCRATCH_ONLY if key in given and given[key] not in (None, {}, DEFAULTS[key])]
        if clash:
            raise ValueError(f"a model grown from {config['grow_from']} keeps its network and text encoder; remove "
                             f"{', '.join(clash)} (or train from scratch with grow_from=None / --scratch)")
    if config["freeze_spatial"] and config["grow_from"] is None:
        raise ValueError("freeze_spatial keeps the grown image model's spatial layers; a model from scratch must "
                         "train them (drop --freeze-spatial or grow from an image model)")
    if isinstance(config["text_encoder"], str):
        config["text_encoder"] = {"name": config["text_encoder"]}
    if config["text_encoder"] is not None and config["text_encoder"].get("name") not in ("minilm", "learned"):
        raise ValueError(f"text_encoder must be minilm or learned, got {config['text_encoder']!r}")
    return config


def _image_model_config(folder: str) -> dict[str, Any]:
    model_config = read_config(folder).get("model_config") or {}
    if model_config.get("kind") != "image" or not model_config.get("text_encoder"):
        raise ValueError(f"--grow-from {folder}: not a text-to-image model (kind {model_config.get('kind')!r}, "
                         f"text encoder {model_config.get('text_encoder')!r}); pass one, or --scratch")
    return model_config


def _image_unet(model_config: dict[str, Any]) -> dict[str, Any]:
    return dict(model_config.get("net") or model_config.get("unet") or {})


def image_world_of(config: dict[str, Any]) -> dict | None:
    """The shapes world of the joint still images: the grown image model's training world (so growing keeps what
    it was taught), else the default world at the clips' resolution."""
    if config["grow_from"] is None:
        return None
    world = dict((_image_model_config(config["grow_from"]).get("training") or {}).get("world") or {})
    return world | {"resolution": config["resolution"]} if world else None


def build_spec(config: dict[str, Any], dataset) -> VideoModelSpec:
    """A new model's spec: grown (the image model's network, text encoder, noise) or from scratch."""
    _, frames, height, width = dataset.shape
    if height != width:
        raise ValueError(f"frames must be square, got {width}x{height}")
    temporal = {"temporal_kernel": 3, "temporal_attention": True, **config["temporal"]}
    if config["grow_from"] is not None:
        image = _image_model_config(config["grow_from"])
        unet = _image_unet(image)
        if unet.get("resolution") != height:
            raise ValueError(f"{config['grow_from']} makes {unet.get('resolution')}px images but the clips are "
                             f"{height}px; pass --resolution {unet.get('resolution')} (world) or matching clips")
        net = network_config("spacetime_unet", "small", **{**unet, **temporal})
        text_encoder = dict(image["text_encoder"])
        diffusion = DiffusionConfig.from_dict(image["diffusion"] | config["diffusion"])
    else:
        encoder_spec = dict(config["text_encoder"] or {"name": "minilm"})
        if encoder_spec["name"] == "learned":
            captions = getattr(dataset, "captions", None)
            if captions is None:  # the world: its caption grammar
                from .world import MOTION_PHRASES
                from noisecraft.shapes.world import vocabulary
                words = set(vocabulary()) | {w for p in MOTION_PHRASES.values() for w in split_words(p)}
            else:
                words = {w for c in captions for w in split_words(c)}
            encoder_spec.setdefault("vocab", sorted(words))
            encoder = make_text_encoder(encoder_spec)
        else:
            encoder = shared_text_encoder(encoder_spec)
        text_encoder = encoder.to_dict()
        net = network_config("spacetime_unet", config["preset"], **{
            **config["net"], **temporal, "resolution": height, "in_channels": 3, "out_channels": None,
            "num_classes": 0, "context_dim": encoder.dim})
        diffusion = DiffusionConfig.edm(**{"cond_drop_prob": 0.1, **config["diffusion"]})
    training = {k: v for k, v in config.items() if k not in ("out_dir", "train", "steps", "minutes")}
    world = dataset.config.to_dict() if config["data"] == "world" else None
    return VideoModelSpec(frames=frames, shape=[3, height, width], net=net, diffusion=diffusion.to_dict(),
                          max_frames=config["max_frames"], text_encoder=text_encoder, data=str(config["data"]),
                          world=world, grown_from=config["grow_from"], training=training)


def train_video(config: dict[str, Any], *, resume: bool = False, progress: bool = True):
    """The registry's training entry (``noisecraft.train(config, modality="video")``); returns the Trainer's result.

    ``config`` keys (see :data:`DEFAULTS`): ``out_dir`` (required), ``data`` ("world" or a clip folder), ``frames``
    per clip (8), ``max_frames`` a model generates (16), ``grow_from`` (a text-to-image model folder, default the
    shipped one; None: from scratch with ``preset``, ``net``, ``text_encoder``), ``temporal`` (temporal_kernel,
    temporal_attention), ``resolution`` (world), ``world`` (VideoWorldConfig fields), ``joint_images`` (world:
    train on still shapes-world images beside the clips), ``freeze_spatial`` (train only the temporal layers of a
    grown model, as Make-A-Video's first stage; still images then teach nothing and are left out), ``num_examples``, ``skip_bad`` (clip folders),
    ``steps`` or ``minutes``, ``batch_size`` (clips per step), ``lr``, ``seed``, ``diffusion`` and ``train``
    (TrainConfig fields). ``resume=True`` continues the run in ``out_dir`` (give a larger ``steps``/``minutes``).
    """
    config = check_config(config)
    out_dir = Path(config["out_dir"])
    checkpoint = run_checkpoint(out_dir, resume=resume)
    world = {"resolution": config["resolution"], **config["world"]}
    dataset = build_video_data(config["data"], frames=config["frames"], seed=config["seed"],
                               num_examples=config["num_examples"], world=world if config["data"] == "world" else None,
                               image_world=image_world_of(config),
                               images=config["joint_images"] and not config["freeze_spatial"],
                               skip_bad=config["skip_bad"])
    if getattr(dataset, "report", ""):
        warnings.warn(dataset.report, stacklevel=2)
    if checkpoint is not None:  # the run's own model (network, text encoder, noise) continues
        spec = VideoModelSpec.from_dict(read_config(checkpoint)["model_config"])
    else:
        spec = build_spec(config, dataset)
    train_config = train_config_for(config, checkpoint=checkpoint, warmup_cap=100, checkpoint_every=200, log_cap=25)
    torch.manual_seed(config["seed"])  # temporal layers (and a scratch network) initialisation
    model = VideoDiffusionModel(spec)
    if checkpoint is None and spec.grown_from is not None:
        grow_from_image_model(model, spec.grown_from)
    if config["freeze_spatial"]:  # the optimizer and the DDP reducer then see only the temporal layers
        model.requires_grad_(False)
        for parameter in model.net.temporal_parameters():
            parameter.requires_grad_(True)
    trainer = Trainer(model, make_loss_fn(spec), dataset, train_config, out_dir,
                      model_config=spec.to_dict(), progress=progress)
    return trainer.fit(resume=resume)


def make_tiny_model(out_dir: str | Path) -> Path:
    """A tiny text-to-video model (16 px, 8 frames, learned text encoder, from scratch, two steps; seconds): the
    contract test's model."""
    train_video({"out_dir": str(out_dir), "grow_from": None, "preset": "tiny", "resolution": 16,
                 "text_encoder": {"name": "learned", "dim": 16, "layers": 1, "heads": 2}, "num_examples": 16,
                 "steps": 2, "batch_size": 2, "train": {"checkpoint_every": 0, "log_every": 1}}, progress=False)
    return Path(out_dir)
