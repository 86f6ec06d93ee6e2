"""The Python API, mirroring the CLI: ``noisecraft.train(config)``, ``noisecraft.load(path).generate(...)``.

Both read the modality registry (:mod:`noisecraft.registry`), so every modality is trained and loaded the same way.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from noisecraft import registry


def train(config: dict[str, Any] | Any, *, modality: str = "image", resume: bool = False, progress: bool = True):
    """Train a model of ``modality`` from its training config (a dict, or the modality's config object).

    Images take an :class:`~noisecraft.images.training.ImageTrainConfig`; tables a dict of
    :func:`noisecraft.tabular.fit`'s arguments with ``data`` and ``out_dir``. Returns the training result (``.step``);
    ``out_dir`` is then a model folder that :func:`load` reads.
    """
    return registry.get(modality).resolve("train")(config, resume=resume, progress=progress)


def load(path: str | Path, *, use_ema: bool = True, device: str = "cpu", safety: bool = True):
    """Load a trained model folder (a run folder, its export, or one checkpoint) as a ready-to-generate pipeline.

    The modality is read from the folder's ``config.json`` (``model_config.kind``). Every pipeline implements
    :class:`noisecraft.protocol.Pipeline`: ``parameters()``, ``describe()``, ``generate(params, seed=, progress=,
    cancel=)`` and ``save(generation, out_dir)``; each also keeps its modality's own API (``ImagePipeline.sample``,
    ``TabularModel.sample``).

    Safety filters (:mod:`noisecraft.safety`) check every generation's text inputs and outputs and refuse with the
    rule that fired; ``safety=False`` exempts this pipeline, ``NOISECRAFT_SAFETY=off`` turns them off everywhere and
    ``NOISECRAFT_SAFETY=policy.json`` picks another policy.
    """
    modality, model_dir = registry.for_model_dir(path)
    pipeline = modality.resolve("pipeline").load(model_dir, use_ema=use_ema, device=device)
    from noisecraft import safety as filters  # on by default; NOISECRAFT_SAFETY=off or safety=False turns it off

    if safety:
        filters.ensure_enabled()
    else:
        filters.exempt(pipeline)
    return pipeline
