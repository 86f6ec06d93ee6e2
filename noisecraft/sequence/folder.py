"""Reading a sequence-model folder (text, molecules): the network, its spec and the tokenizer it was trained with.

A run's checkpoints (``run/checkpoints/step_N``) keep the tokenizer in the run folder, so it is looked for there too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import torch

from noisecraft.device import resolve_device
from noisecraft.training.checkpoint import load_weights, read_config, resolve_model_dir


def find_tokenizer(model_dir: Path, name: str, *, what: str, fit_command: str) -> Path:
    """The tokenizer file of a model folder: in it, or, for ``run/checkpoints/step_N``, in the run folder."""
    for folder in (model_dir, model_dir.parent.parent):
        if (folder / name).is_file():
            return folder / name
    raise FileNotFoundError(f"{model_dir} has no {name}: a {what} model folder holds the tokenizer it was trained "
                            f"with (written by `{fit_command}`)")


def load_sequence_folder(path: str | Path, *, kind: str, what: str, fit_command: str, tokenizer_file: str,
                         load_tokenizer: Callable[[Path], Any], device: str = "cpu",
                         use_ema: bool = True) -> tuple[torch.nn.Module, Any, Any, dict, Path]:
    """``(model, spec, tokenizer, model_config, model_dir)`` of the ``kind`` model at ``path``, on ``device`` in
    eval mode without gradients; a folder of another kind, or whose tokenizer does not fit, is a one-line error."""
    from noisecraft.sequence.model import SequenceDiffusionModel, SequenceModelSpec

    model_dir = resolve_model_dir(path)
    model_config = read_config(model_dir)["model_config"]
    if model_config.get("kind") != kind:
        raise ValueError(f"{model_dir} holds a {model_config.get('kind')!r} model, not a {what} one")
    spec = SequenceModelSpec.from_dict(model_config)
    name = (spec.extra or {}).get("tokenizer", tokenizer_file)
    tokenizer = load_tokenizer(find_tokenizer(model_dir, name, what=what, fit_command=fit_command))
    if tokenizer.vocab_size != spec.vocab_size:
        raise ValueError(f"{model_dir}: the tokenizer has {tokenizer.vocab_size} tokens but the model "
                         f"{spec.vocab_size}; the folder mixes files of different runs")
    model = SequenceDiffusionModel(spec)
    load_weights(model, model_dir, use_ema=use_ema)
    model = model.to(resolve_device(device or "cpu")).eval()
    model.requires_grad_(False)
    return model, spec, tokenizer, model_config, model_dir
