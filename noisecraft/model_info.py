"""``noisecraft info MODEL``: what a model folder of any modality holds, in a screenful."""

from __future__ import annotations

import json
from pathlib import Path

from noisecraft import registry
from noisecraft.training.checkpoint import EMA_FILE, MODEL_FILE, read_config


def count_parameters(path: Path) -> int:
    """Number of values in a safetensors file, read from its header (no weights are loaded)."""
    from safetensors import safe_open

    total = 0
    with safe_open(str(path), framework="pt") as tensors:
        for key in tensors.keys():
            size = 1
            for dim in tensors.get_slice(key).get_shape():
                size *= dim
            total += size
    return total


def _size(num_bytes: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if num_bytes < 1024 or unit == "GiB":
            return f"{num_bytes:.0f} {unit}" if unit == "B" else f"{num_bytes:.1f} {unit}"
        num_bytes /= 1024
    return ""


def describe_model_folder(path: str | Path, *, full: bool = False) -> str:
    """Modality, kind, step, parameter count and file sizes, what it was trained on, and the generation
    parameters its pipeline takes (name, kind, default, limits); ``full`` adds the stored config.json."""
    modality, model_dir = registry.for_model_dir(path)
    config = read_config(model_dir)
    model_config = config.get("model_config") or {}
    lines = [f"model folder: {model_dir}",
             f"modality: {modality.name}   kind: {model_config.get('kind')}   step: {config.get('step')}"]
    weights = model_dir / MODEL_FILE
    if weights.is_file():
        files = [p for p in (weights, model_dir / EMA_FILE) if p.is_file()]
        sizes = ", ".join(f"{p.name} {_size(p.stat().st_size)}" for p in files)
        lines.append(f"parameters: {count_parameters(weights):,}   files: {sizes}")
    train = config.get("train_config") or {}
    trained = {k: train[k] for k in ("steps", "batch_size", "lr", "seed") if k in train}
    if model_config.get("data"):
        trained = {"data": model_config["data"]} | trained
    if trained:
        lines.append("trained: " + ", ".join(f"{k}={v}" for k, v in trained.items()))
    pipeline = modality.resolve("pipeline").load(model_dir, device="cpu")
    lines.append(f"generation parameters ({modality.name}):")
    for param in pipeline.parameters():
        limits = [f"{key} {value:g}" for key, value in (("min", param.minimum), ("max", param.maximum))
                  if value is not None]
        extra = [f"default {param.default!r}"] if param.default is not None else []
        extra += ["required"] if param.required else []
        extra += limits
        if param.choices:
            extra.append("one of " + ", ".join(param.choices[:8]) + (" ..." if len(param.choices) > 8 else ""))
        lines.append(f"  {param.name} ({param.kind}{'; ' + '; '.join(extra) if extra else ''}): {param.help}")
    if full:
        lines.append(json.dumps(config, indent=2))
    return "\n".join(lines)
