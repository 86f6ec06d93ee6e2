"""The Python API, mirroring the CLI: ``noisecraft.train(config)``, ``noisecraft.load(path).sample(...)``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from noisecraft.training.checkpoint import read_config, resolve_model_dir


def train(config: dict[str, Any] | Any, *, resume: bool = False, progress: bool = True):
    """Train an image model from an :class:`~noisecraft.images.training.ImageTrainConfig` (or its dict).

    Returns the trainer's :class:`~noisecraft.training.trainer.TrainResult`; ``config.out_dir`` is then a model
    folder that :func:`load` reads.
    """
    from noisecraft.images.training import train_images

    return train_images(config, resume=resume, progress=progress)


def load(path: str | Path, *, use_ema: bool = True, device: str = "cpu"):
    """Load a trained model folder (a run folder, its export, or one checkpoint) as a ready-to-sample pipeline.

    The model's kind is read from its ``config.json``; image models give an
    :class:`~noisecraft.images.pipeline.ImagePipeline`.
    """
    model_dir = resolve_model_dir(path)
    kind = read_config(model_dir).get("model_config", {}).get("kind")
    if kind == "image":
        from noisecraft.images.pipeline import ImagePipeline

        return ImagePipeline.load(model_dir, use_ema=use_ema, device=device)
    if kind == "tabular":
        from noisecraft.tabular import TabularModel

        return TabularModel.load(model_dir)
    raise ValueError(f"{model_dir}/config.json names model kind {kind!r}, which this version of noisecraft cannot "
                     "load (known: image, tabular)")
