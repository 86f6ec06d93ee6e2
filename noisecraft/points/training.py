"""Training a points model: world or mesh folder -> clouds ``[N, C]`` -> ``PointsDiffusionModel`` -> the shared
Trainer. ``train_points({"data": "world", "out_dir": "runs/points", "points": 512, "preset": "small",
"minutes": 45})``.

Conditioning: captions (the world's, or a folder's ``metadata.jsonl``) through a text encoder ("minilm": the frozen
MiniLM shared with text-to-image, the default; "learned": a small encoder trained with the model on the caption
vocabulary); folders with sub-folders and no captions train on class labels; ``text_encoder="none"`` with the world
trains on its "shape:proportion" classes. Conditions are dropped with ``cond_drop_prob`` (0.1) for classifier-free
guidance.
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

from .data import build_points_data
from .pipeline import PointsDiffusionModel, PointsModelSpec, make_loss_fn
from .world import vocabulary

DEFAULTS: dict[str, Any] = {
    "data": "world", "out_dir": None, "points": 512, "normals": False, "preset": "small", "net": {},
    "text_encoder": None, "world": {}, "num_examples": 200_000, "skip_bad": False, "max_points": 4096,
    "steps": None, "minutes": None, "batch_size": 32, "lr": 5e-4, "seed": 0, "cond_drop_prob": 0.1,
    "diffusion": {}, "train": {},
}
# The points modality's noise range: clouds lie in the unit ball (per-coordinate std ~0.3-0.5).
POINTS_DIFFUSION = {"sigma_data": 0.5, "sigma_min": 0.002, "sigma_max": 40.0}


def check_config(config: dict[str, Any]) -> dict[str, Any]:
    config = with_defaults(config, DEFAULTS, what="points training")
    check_positive_ints(config, ("points", "batch_size", "num_examples", "max_points"))
    if config["points"] > config["max_points"]:
        raise ValueError(f"points ({config['points']}) is above max_points ({config['max_points']})")
    if isinstance(config["text_encoder"], str):
        config["text_encoder"] = {"name": config["text_encoder"]}
    if config["text_encoder"] is not None and config["text_encoder"].get("name") not in ("minilm", "learned", "none"):
        raise ValueError(f"text_encoder must be minilm, learned or none, got {config['text_encoder']!r}")
    return config


def build_spec(config: dict[str, Any], dataset) -> PointsModelSpec:
    captions = getattr(dataset, "captions", None)
    encoder_spec = config["text_encoder"]
    if encoder_spec is None:
        encoder_spec = {"name": "minilm"} if captions else {"name": "none"}
    class_names: list[str] = []
    text_encoder = None
    if encoder_spec["name"] == "none":
        class_names = list(getattr(dataset, "class_names", []) or [])
    else:
        if not captions:
            raise ValueError(f"--text-encoder {encoder_spec['name']} needs captions, but {config['data']!r} has "
                             'none: add a metadata.jsonl ({"file_name": ..., "text": ...} per line)')
        encoder_spec = dict(encoder_spec)
        if encoder_spec["name"] == "learned":
            encoder_spec.setdefault("vocab", vocabulary() if config["data"] == "world" else
                                    sorted({w for c in captions for w in split_words(c)}))
            encoder_spec.setdefault("dim", 64)
            encoder_spec.setdefault("layers", 1)
            text_encoder = make_text_encoder(encoder_spec)
        else:
            text_encoder = shared_text_encoder(encoder_spec)
    net = network_config("point_transformer", config["preset"],
                         **{**config["net"], "in_channels": 6 if config["normals"] else 3,
                            "num_classes": len(class_names), "max_points": config["max_points"],
                            "context_dim": text_encoder.dim if text_encoder is not None else None})
    conditioned = bool(class_names) or text_encoder is not None
    diffusion = DiffusionConfig.edm(**{**POINTS_DIFFUSION, "cond_drop_prob": config["cond_drop_prob"] if conditioned
                                       else 0.0, **config["diffusion"]})
    # provenance only; the optimisation settings (steps, minutes, train) live in train_config and may change on resume
    training = {k: v for k, v in config.items() if k not in ("out_dir", "train", "steps", "minutes")}
    return PointsModelSpec(points=config["points"], channels=6 if config["normals"] else 3, net=net,
                           diffusion=diffusion.to_dict(), class_names=class_names,
                           text_encoder=text_encoder.to_dict() if text_encoder is not None else None,
                           data=str(config["data"]),
                           world=dataset.config.to_dict() if config["data"] == "world" else None,
                           training=training)


def train_points(config: dict[str, Any], *, resume: bool = False, progress: bool = True):
    """The registry's training entry (``noisecraft.train(config, modality="points")``); returns the Trainer's result.

    ``config`` keys: ``out_dir`` (required), ``data`` ("world" or a mesh folder), ``points`` (512), ``normals``,
    ``preset`` (tiny, small, base), ``net`` (overrides), ``text_encoder`` (minilm, learned, none), ``world``
    (WorldConfig fields: held_out, orientation, ...), ``num_examples``, ``skip_bad``, ``max_points``, ``steps`` or
    ``minutes``, ``batch_size``, ``lr``, ``seed``, ``cond_drop_prob``, ``diffusion`` and ``train`` (TrainConfig).
    ``resume=True`` continues the run in ``out_dir`` with the same settings (give a larger ``steps``/``minutes``).
    """
    config = check_config(config)
    out_dir = Path(config["out_dir"])
    checkpoint = run_checkpoint(out_dir, resume=resume)
    dataset = build_points_data(config["data"], points=config["points"], normals=config["normals"],
                                world=config["world"], num_examples=config["num_examples"], seed=config["seed"],
                                skip_bad=config["skip_bad"])
    if getattr(dataset, "report", ""):
        warnings.warn(dataset.report, stacklevel=2)
    if checkpoint is not None and resume:  # the run's own model (network, text encoder, noise) continues
        spec = PointsModelSpec.from_dict(read_config(checkpoint)["model_config"])
    else:
        spec = build_spec(config, dataset)
    train_config = train_config_for(config, checkpoint=checkpoint, warmup_cap=200)
    torch.manual_seed(config["seed"])  # network initialisation: the same seed gives the same model
    model = PointsDiffusionModel(spec)
    trainer = Trainer(model, make_loss_fn(spec), dataset, train_config, out_dir,
                      model_config=spec.to_dict(), progress=progress)
    return trainer.fit(resume=resume)


def make_tiny_model(out_dir: str | Path) -> Path:
    """A tiny text-conditioned points model (64 points, learned text encoder, two steps; seconds): the contract
    test's model."""
    train_points({"data": "world", "out_dir": str(out_dir), "points": 64, "preset": "tiny", "max_points": 256,
                  "text_encoder": {"name": "learned", "dim": 16, "layers": 1, "heads": 2}, "num_examples": 64,
                  "steps": 2, "batch_size": 4, "train": {"checkpoint_every": 0, "log_every": 1}}, progress=False)
    return Path(out_dir)
